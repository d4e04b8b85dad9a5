import type { LoadModelHeader } from "./gen/messages";

/**
 * What `loadModel` loads: `opal.device.v1.LoadModelHeader` (an HF config plus the length and digest
 * of the safetensors weights, or a device-local reference) and the weight bytes themselves.
 */
export interface LoadModelRequest extends LoadModelHeader {
  /** The safetensors file's bytes, in order; absent with `deviceLocalRef`. Consumed once. */
  readonly weights?: AsyncIterable<Uint8Array>;
}
