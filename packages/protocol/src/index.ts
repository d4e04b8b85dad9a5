/**
 * The `opal.device.v1` wire protocol: generated message code and grpc-js service definitions, the
 * rich error codec (`google.rpc.Status` in `grpc-status-details-bin`), and protocol versioning.
 * Servers and clients use it; applications use `@opal/client` or `@opal/server` instead.
 *
 * @packageDocumentation
 */

export type { GrpcService, ServiceImplementationOptions } from "./create-service-implementation";
export { createServiceImplementation } from "./create-service-implementation";
export {
  fromWireCapabilities,
  fromWireInfo,
  fromWireModel,
  fromWireTelemetry,
  toWireCapabilities,
  toWireInfo,
  toWireLoadResult,
  toWireModel,
  toWireTelemetry,
} from "./device-wire";
export { encodeChunkResponse } from "./encode-chunk-response";
export { FILE_DESCRIPTOR_SET_BASE64 } from "./gen/descriptor-set";
export { google, opal } from "./gen/pb.js";
export { DeviceServiceDefinition, KvReceiverServiceDefinition } from "./gen/services";
export { fromGrpcStatus, STATUS_DETAILS_TRAILER, toGrpcStatus } from "./grpc-status";
export { isLoopbackHost } from "./is-loopback-host";
export {
  fromWireChunk,
  fromWireDescriptor,
  fromWirePosition,
  toWireChunk,
  toWireDescriptor,
  toWirePosition,
} from "./kv-wire";
export type {
  GrpcListener,
  GrpcListenerOptions,
  GrpcListenerTls,
  GrpcTransportSettings,
} from "./listen-grpc";
export { listenGrpc } from "./listen-grpc";
export type { MalformedRequest } from "./malformed-request";
export { assertWellFormed, tolerantDeserializer } from "./malformed-request";
export {
  fromWireFetchEvent,
  fromWireFetchRequest,
  fromWirePrefillEvent,
  fromWirePrefillRequest,
  toWireFetchEvent,
  toWireFetchRequest,
  toWirePrefillEvent,
  toWirePrefillRequest,
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
export { decodeStatus, ERROR_DOMAIN, encodeStatus, MAX_STATUS_BYTES } from "./status-codec";
export type { ProtocolVersion } from "./version";
export { assertCompatibleVersion, PROTOCOL_VERSION, parseProtocolVersion } from "./version";
export { waitForDrain } from "./wait-for-drain";
export {
  dataPlaneEnum,
  deviceKindEnum,
  dtypeEnum,
  layoutEnum,
  partEnum,
  probeStateEnum,
  scaleSchemeEnum,
  severityEnum,
} from "./wire-enums";
