/**
 * The CPU reference transformer of OPAL: a Llama-family decoder (RMSNorm, rotary embeddings with
 * Llama 3 scaling, grouped-query attention, SwiGLU) for prefill, chunked prefill and decode in f32,
 * bit-for-bit deterministic; a byte-level tokenizer; seeded presets; Hugging Face checkpoint
 * loading and export; and fast deterministic synthetic KV for real model shapes.
 *
 * @packageDocumentation
 */
// biome-ignore-all assist/source/organizeImports: exports are listed user-facing first, not sorted

// The model, its cache and sampling
export { createReferenceModel } from "./reference-model";
export type {
  GenerateOptions,
  PrefillOptions,
  PrefillResult,
  ReferenceModel,
  ReferenceModelOptions,
} from "./reference-model";
export { createReferenceKvCache, fromKvLayers, toKvPrefix } from "./reference-kv-cache";
export type { ReferenceKvCache, ReferenceKvCacheOptions } from "./reference-kv-cache";
export { createSampler, createSeededSampler, sampleGreedy } from "./sampling";
export type { Sampler, SamplingOptions } from "./sampling";

// Weights, presets and the tokenizer
export { createPresetWeights, toPresetConfig, toPresetNames } from "./create-preset-weights";
export type { PresetName } from "./create-preset-weights";
export { createByteTokenizer } from "./byte-tokenizer";
export type { ByteTokenizer, EncodeTextOptions } from "./byte-tokenizer";

// Hugging Face checkpoints and configs
export {
  decodeHfCheckpoint,
  encodeHfCheckpoint,
  exportHfCheckpoint,
  loadHfCheckpoint,
} from "./hf-checkpoint";
export type {
  EncodedHfCheckpoint,
  EncodeHfCheckpointOptions,
  HfCheckpoint,
  HfWeightDtype,
} from "./hf-checkpoint";
export { assertModelConfig, fromHfConfig, toEosTokenIds, toHfConfig } from "./model-config";
export type { HfConfigJson, Llama3RopeScaling, ModelConfig } from "./model-config";

// Bridge to @opal/kv caches
export { fromKvCache, toKvCache } from "./to-kv-cache";
export type { ToKvCacheOptions } from "./to-kv-cache";

// Synthetic KV for real model shapes
export { createSyntheticKv, syntheticShape, toSyntheticShapeNames } from "./synthetic-kv";
export type {
  SyntheticKv,
  SyntheticKvRequest,
  SyntheticModelShape,
  SyntheticShapeName,
} from "./synthetic-kv";

// Lower level: FLOP counting, fingerprints, weight layout, rotary frequencies
export { prefillFlops } from "./prefill-flops";
export { toModelFingerprint } from "./model-fingerprint";
export {
  assertModelWeights,
  fromNamedWeights,
  toNamedWeights,
  toWeightLayout,
} from "./model-weights";
export type { LayerWeightName, LayerWeights, ModelWeights, NamedWeight } from "./model-weights";
export { toRopeInvFreq } from "./rope";
