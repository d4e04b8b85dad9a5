import { createHash } from "node:crypto";
import {
  createPresetWeights,
  createReferenceModel,
  encodeHfCheckpoint,
  type ReferenceModel,
} from "@opal/reference";

/**
 * The model the suite uploads and checks caches against: the seeded `opal-tiny` reference weights
 * (2 layers, 2 KV heads of 16 dims, 258-token byte vocabulary), as a Hugging Face checkpoint.
 */
export interface ConformanceModel {
  /** `config.json` text. */
  readonly configJson: string;
  /** `model.safetensors` bytes (f32). */
  readonly safetensors: Uint8Array;
  /** Lower-case hex SHA-256 of `safetensors`. */
  readonly weightsSha256: string;
  /** The exact reference (f32, f32 accumulation) of the same weights. */
  readonly reference: ReferenceModel;
}

/** Options of {@link createConformanceModel}. */
export interface ConformanceModelOptions {
  /** Weight seed; default 0 (the conformance weights). Other seeds give a different model. */
  readonly seed?: number;
}

/** Builds the conformance model (deterministic: same seed, same bytes). */
export function createConformanceModel(options: ConformanceModelOptions = {}): ConformanceModel {
  const weights = createPresetWeights("opal-tiny", { seed: options.seed ?? 0 });
  const { configJson, safetensors } = encodeHfCheckpoint(weights);
  return {
    configJson,
    safetensors,
    weightsSha256: createHash("sha256").update(safetensors).digest("hex"),
    reference: createReferenceModel(weights),
  };
}

/** Splits `bytes` into `LoadModel` weight chunks of at most `chunkBytes`. */
export function toWeightChunks(bytes: Uint8Array, chunkBytes: number): Uint8Array[] {
  const size = Math.max(1, chunkBytes);
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.byteLength; offset += size) {
    chunks.push(bytes.subarray(offset, Math.min(bytes.byteLength, offset + size)));
  }
  return chunks;
}
