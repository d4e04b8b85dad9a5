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
  DeviceCapabilities,
  DeviceFeatures,
  RetentionLimits,
} from "./device-capabilities";
export type { DeviceInfo, ProbeState } from "./device-info";
export { PROTOCOL_VERSION } from "./device-info";
export type { LoadModelRequest, LoadModelResult, ModelInfo } from "./model-info";
export { MIN_CHUNK_BYTES, negotiateChunkBytes } from "./negotiate-chunk-bytes";
export { prefillBodyDigest } from "./prefill-body-digest";
export { prefillCacheByteLength } from "./prefill-cache-byte-length";
export type { DriverCallOptions, PrefillDriver } from "./prefill-driver";
export { DRIVER_API_VERSION } from "./prefill-driver";
export type {
  FetchEvent,
  FetchKvRequest,
  KvPosition,
  PrefillEvent,
  PrefillStats,
} from "./prefill-event";
export type {
  DecoderPrefix,
  KvFormat,
  PrefillRequest,
  PushTarget,
  Sampling,
} from "./prefill-request";
export type { StreamKvCacheOptions } from "./stream-kv-cache";
export { streamKvCache } from "./stream-kv-cache";
export { telemetryIntervalMs } from "./telemetry-interval-ms";
export type { HealthCondition, TelemetrySnapshot } from "./telemetry-snapshot";
export type { ValidatedPrefill } from "./validate-prefill-request";
export { validatePrefillRequest } from "./validate-prefill-request";
