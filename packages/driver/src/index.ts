/**
 * The vendor contract: a prefill device is a {@link PrefillDriver}. Vendors implement it (and serve
 * it with `@opal/server`); the SDK's remote device implements it too, so every driver test runs
 * against both. Types and small helpers only.
 *
 * @packageDocumentation
 */

export { assertDriverApiVersion } from "./assert-driver-api-version";
export { createCapabilities } from "./create-capabilities";
export type { DeviceSlots } from "./create-device-slots";
export { createDeviceSlots } from "./create-device-slots";
export type {
  DataPlaneKind,
  DecoderPrefix,
  DeviceCapabilities,
  DeviceFeatures,
  DeviceInfo,
  DeviceKind,
  FetchKvAccepted,
  FetchKvCompleted,
  FetchKvRequest,
  HealthCondition,
  HealthSeverity,
  KvFormat,
  KvPosition,
  LoadModelHeader,
  LoadModelResult,
  MhaShape,
  MlaShape,
  ModelInfo,
  PrefillAccepted,
  PrefillRequest,
  PrefillStats,
  ProbeState,
  PushProgress,
  PushReceipt,
  PushTarget,
  ReceivedKvFormat,
  ReceivedPrefillRequest,
  RetentionLimits,
  SamplingMode,
  TelemetrySnapshot,
} from "./gen/messages";
export type { LoadModelRequest } from "./load-model-request";
export { MIN_CHUNK_BYTES, negotiateChunkBytes } from "./negotiate-chunk-bytes";
export { prefillBodyDigest } from "./prefill-body-digest";
export { prefillCacheByteLength } from "./prefill-cache-byte-length";
export type { DriverCallOptions, PrefillDriver } from "./prefill-driver";
export { DRIVER_API_VERSION } from "./prefill-driver";
export type { FetchEvent, PrefillEvent } from "./prefill-event";
export { PROTOCOL_VERSION } from "./protocol-version";
export type { ReceivedSampling, Sampling } from "./sampling";
export type { StreamKvCacheOptions } from "./stream-kv-cache";
export { streamKvCache } from "./stream-kv-cache";
export { telemetryIntervalMs } from "./telemetry-interval-ms";
export type { UnknownEnumValue } from "./unknown-enum-value";
export type { ValidatedPrefill } from "./validate-prefill-request";
export { validatePrefillRequest } from "./validate-prefill-request";
