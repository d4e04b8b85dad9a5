import type { KvAttention } from "@opal/kv";

/** A model loaded on a device. */
export interface ModelInfo {
  /** The name prefill requests use. */
  readonly modelId: string;
  /** Lower-case hex; identifies architecture, shapes and weights; copied into every descriptor. */
  readonly fingerprint: string;
  /** e.g. "LlamaForCausalLM". */
  readonly architecture: string;
  readonly numLayers: number;
  readonly attention: KvAttention;
  /** Valid token ids are `0 .. vocabSize - 1`. */
  readonly vocabSize: number;
  /** Longest context, in tokens. */
  readonly maxPositionEmbeddings: number;
}

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

/** Result of `loadModel`. */
export interface LoadModelResult {
  readonly model: ModelInfo;
  /** True when the same fingerprint was already loaded under this id (idempotent load). */
  readonly alreadyLoaded: boolean;
}
