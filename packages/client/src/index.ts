/**
 * The OPAL SDK that integrators embed: offload prefill to remote devices and hand the KV cache to
 * decoders. No grpc-js type appears in this package's public surface.
 *
 * @packageDocumentation
 */

export type { ClientChannelOptions, ClientTlsOptions, DeviceClientOptions } from "./client-options";
export type { DeviceClient } from "./create-device-client";
export { createDeviceClient, DEFAULT_CHANNEL } from "./create-device-client";
export type { LayerReady, PrefillOutcome, PrefillRun, TransferStats } from "./start-prefill";
export { startPrefill } from "./start-prefill";
