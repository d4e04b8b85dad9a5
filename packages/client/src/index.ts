/**
 * The OPAL SDK that integrators embed: offload prefill to remote devices and pools of them, survive
 * faults (resume, retry, circuit breaking), and hand the KV cache to decoders layer by layer through
 * sinks or push handoff. No grpc-js type appears in this package's public surface. What callers
 * catch and compare comes from `@opal/core` and is re-exported here: `OpalError`, `Code`, `Reason`.
 *
 * @packageDocumentation
 */

export type { FieldViolation } from "@opal/core";
export { Code, isOpalError, OpalError, Reason } from "@opal/core";
export type {
  ClientChannelOptions,
  ClientTlsOptions,
  DeviceClientOptions,
} from "./device-client/client-options";
export type { DeviceClient } from "./device-client/create-device-client";
export { createDeviceClient, DEFAULT_CHANNEL } from "./device-client/create-device-client";
export { createKvReceiver } from "./kv-receiver/create-kv-receiver";
export type { KvReceiver, KvReceiverOptions, ReceivedKv } from "./kv-receiver/kv-receiver-options";
export { createDevicePool } from "./pool/create-device-pool";
export type {
  DevicePool,
  DevicePoolOptions,
  PoolDevice,
  RoutingPolicy,
} from "./pool/device-pool-options";
export type {
  LayerReady,
  PrefillOptions,
  PrefillOutcome,
  PrefillRun,
  TransferStats,
} from "./prefill/prefill-run";
export type { PushOutcome } from "./prefill/push-prefill";
export { pushPrefill } from "./prefill/push-prefill";
export type { RetryPolicy } from "./prefill/retry-policy";
export { backoffMs, isRetryable } from "./prefill/retry-policy";
export { startPrefill } from "./prefill/start-prefill";
export { writeAtomicFile } from "./sinks/create-atomic-file";
export type { KvSink } from "./sinks/kv-sink";
export type { LmcacheReceipt, LmcacheSinkOptions } from "./sinks/lmcache-sink";
export { createLmcacheSink } from "./sinks/lmcache-sink";
export { createMemorySink } from "./sinks/memory-sink";
export type { OkvFileReceipt, OkvFileSinkOptions } from "./sinks/okv-file-sink";
export { createOkvFileSink } from "./sinks/okv-file-sink";
export { assertFreeOutput, writeAtomicFolder } from "./sinks/publish-output";
export type {
  SafetensorsFileReceipt,
  SafetensorsFileSinkOptions,
} from "./sinks/safetensors-file-sink";
export {
  createSafetensorsFileSink,
  SAFETENSORS_DESCRIPTOR_KEY,
} from "./sinks/safetensors-file-sink";
export type { SglangReceipt, SglangSinkOptions } from "./sinks/sglang-sink";
export { createSglangSink } from "./sinks/sglang-sink";
export type { VllmExampleReceipt, VllmExampleSinkOptions } from "./sinks/vllm-example-sink";
export { createVllmExampleSink } from "./sinks/vllm-example-sink";
export type {
  VllmLayerTensor,
  VllmPagedReceipt,
  VllmPagedSinkOptions,
} from "./sinks/vllm-paged-sink";
export { createVllmPagedSink } from "./sinks/vllm-paged-sink";
