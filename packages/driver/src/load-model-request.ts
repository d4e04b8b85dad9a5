/** What `loadModel` loads: an HF config plus safetensors weight bytes, or a device-local reference. */
export interface LoadModelRequest {
  /** 1-128 characters of `[A-Za-z0-9._:/-]`. */
  readonly modelId: string;
  /** The Hugging Face `config.json` text. */
  readonly configJson: string;
  /** The safetensors file's bytes, in order; absent with `deviceLocalRef`. Consumed once. */
  readonly weights?: AsyncIterable<Uint8Array>;
  /** Total bytes `weights` yields; required with `weights`. */
  readonly weightsByteLength?: number;
  /** Optional lower-case hex SHA-256 of the weight bytes; a mismatch fails MODEL_WEIGHTS_INVALID. */
  readonly weightsSha256?: string;
  /** Name of weights the device already stores. */
  readonly deviceLocalRef?: string;
}
