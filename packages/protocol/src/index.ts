/**
 * The `opal.device.v1` wire protocol: generated message code and grpc-js service definitions, the
 * rich error codec (`google.rpc.Status` in `grpc-status-details-bin`), and protocol versioning.
 * Servers and clients use it; applications use `@opal/client` or `@opal/server` instead.
 *
 * @packageDocumentation
 */

export type { EnumMap } from "./create-enum-map";
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
export {
  fromWireCapabilities,
  fromWireChunk,
  fromWireDescriptor,
  fromWireFetchRequest,
  fromWireInfo,
  fromWireModel,
  fromWirePosition,
  fromWireTelemetry,
  toWireCapabilities,
  toWireChunk,
  toWireDescriptor,
  toWireFetchRequest,
  toWireInfo,
  toWireLoadResult,
  toWireModel,
  toWirePosition,
  toWirePrefillRequest,
  toWireTelemetry,
} from "./gen/mappers";
export { google, opal } from "./gen/pb.js";
export { DeviceServiceDefinition, KvReceiverServiceDefinition } from "./gen/services";
export { fromGrpcStatus, STATUS_DETAILS_TRAILER, toGrpcStatus } from "./grpc-status";
export { isLoopbackHost } from "./is-loopback-host";
export type { MalformedRequest } from "./malformed-request";
export { assertWellFormed, tolerantDeserializer } from "./malformed-request";
export {
  fromWireFetchEvent,
  fromWirePrefillEvent,
  fromWirePrefillRequest,
  toWireFetchEvent,
  toWirePrefillEvent,
} from "./prefill-wire";
export { hasSharedMemory, SHARED_MEMORY_DIRECTORY, sharedMemoryPath } from "./shared-memory-path";
export { decodeStatus, ERROR_DOMAIN, encodeStatus, MAX_STATUS_BYTES } from "./status-codec";
export type { ProtocolVersion } from "./version";
export { assertCompatibleVersion, PROTOCOL_VERSION, parseProtocolVersion } from "./version";
