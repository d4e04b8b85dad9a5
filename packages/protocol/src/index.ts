/**
 * The `opal.device.v1` wire protocol and the one gRPC adapter of OPAL, both halves of it:
 *
 * - generated code (`gen/`, from `proto/` by `tools/codegen.mjs`): protobufjs messages, typed
 *   grpc-js service definitions (`gen/services.ts`; `gen/grpc-*` for `grpc.health.v1` and server
 *   reflection), enum maps and the mappers to the domain types of `@opal/driver` and `@opal/kv`;
 * - the rich error codec (`google.rpc.Status` in `grpc-status-details-bin`) and protocol
 *   versioning;
 * - client: `createGrpcChannel` (unary and streaming calls with deadlines, cancellation and
 *   back-pressure) and `createGrpcClient` (typed methods over a generated definition), with the
 *   health and reflection clients built on them;
 * - service: `createServiceImplementation` (typed handlers behind interceptors, a per-call context
 *   with an `AbortSignal`) and `listenGrpc`, the one place a grpc-js server is made.
 *
 * Servers and clients use it; applications use `@opal/client` or `@opal/server` instead.
 *
 * @packageDocumentation
 */

export type { EnumMap } from "./create-enum-map";
export type { GrpcChannel } from "./create-grpc-channel";
export { createGrpcChannel } from "./create-grpc-channel";
export type { GrpcClient, GrpcClientMethod } from "./create-grpc-client";
export { createGrpcClient } from "./create-grpc-client";
export type { HealthClient, HealthClientOptions } from "./create-health-client";
export { createHealthClient } from "./create-health-client";
export type {
  ReflectionClient,
  ReflectionClientOptions,
  ReflectionVersion,
} from "./create-reflection-client";
export { createReflectionClient } from "./create-reflection-client";
export type { GrpcService, ServiceImplementationOptions } from "./create-service-implementation";
export {
  createServiceImplementation,
  DEFAULT_STREAM_STALL_TIMEOUT_MS,
} from "./create-service-implementation";
export { encodeChunkResponse } from "./encode-chunk-response";
export { FILE_DESCRIPTOR_SET_BASE64 } from "./gen/descriptor-set";
export {
  dataPlaneEnum,
  deviceKindEnum,
  dtypeEnum,
  layoutEnum,
  partEnum,
  probeStateEnum,
  samplingModeEnum,
  scaleSchemeEnum,
  severityEnum,
} from "./gen/enums";
export { grpc } from "./gen/grpc-pb.js";
export { HealthV1Definition } from "./gen/grpc-services";
export {
  fromWireCapabilities,
  fromWireChunk,
  fromWireDescriptor,
  fromWireFetchRequest,
  fromWireInfo,
  fromWireLoadModelHeader,
  fromWireLoadResult,
  fromWireModel,
  fromWirePosition,
  fromWirePrefillRequest,
  fromWireTelemetry,
  toWireCapabilities,
  toWireChunk,
  toWireDescriptor,
  toWireFetchRequest,
  toWireInfo,
  toWireLoadModelHeader,
  toWireLoadResult,
  toWireModel,
  toWirePosition,
  toWirePrefillRequest,
  toWireTelemetry,
} from "./gen/mappers";
export { google, opal } from "./gen/pb.js";
export { DeviceServiceDefinition, KvReceiverServiceDefinition } from "./gen/services";
export type { GrpcCallOptions } from "./grpc-call-options";
export type {
  GrpcChannelSettings,
  GrpcConnectionOptions,
  GrpcTlsOptions,
} from "./grpc-connection-options";
export type { GrpcMethod, GrpcRequest, GrpcResponse } from "./grpc-method";
export type { GrpcPeerStatus } from "./grpc-peer-status";
export { peerStatusOf } from "./grpc-peer-status";
export { fromGrpcStatus, STATUS_DETAILS_TRAILER } from "./grpc-status";
export type { HealthStatus } from "./health-status";
export { isLoopbackHost } from "./is-loopback-host";
export type {
  GrpcListener,
  GrpcListenerOptions,
  GrpcListenerTls,
  GrpcTransportSettings,
} from "./listen-grpc";
export { listenGrpc } from "./listen-grpc";
export {
  fromWireFetchEvent,
  fromWirePrefillEvent,
  toWireFetchEvent,
  toWirePrefillEvent,
} from "./prefill-wire";
export type { CallMetadata, ServiceContext } from "./service-context";
export type {
  ClientStreamHandler,
  HandlerOf,
  RequestOf,
  ResponseOf,
  ServerStreamHandler,
  ServiceDefinitionOf,
  ServiceHandlers,
  ServiceMethod,
  UnaryHandler,
} from "./service-handlers";
export type {
  InterceptedCall,
  ServiceInterceptor,
  ServiceMethodKind,
} from "./service-interceptor";
export { hasSharedMemory, SHARED_MEMORY_DIRECTORY, sharedMemoryPath } from "./shared-memory-path";
export { decodeStatus, encodeStatus } from "./status-codec";
export type { ProtocolVersion } from "./version";
export { assertCompatibleVersion, PROTOCOL_VERSION, parseProtocolVersion } from "./version";
