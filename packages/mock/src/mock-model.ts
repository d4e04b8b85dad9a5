import { Code, OpalError, Reason } from "@opal/core";
import type { ModelInfo } from "@opal/driver";
import {
  fromFloat32,
  fromKvParts,
  type KvCache,
  type KvDescriptor,
  type KvPart,
  partsOf,
  quantizeKv,
  transposeKvPart,
} from "@opal/kv";
import {
  createPresetWeights,
  createReferenceModel,
  createSyntheticKv,
  fromHfConfig,
  type ModelWeights,
  prefillFlops,
  type ReferenceModel,
  type SyntheticModelShape,
  syntheticShape,
  toPresetConfig,
  toPresetNames,
  toSyntheticShapeNames,
} from "@opal/reference";
import { applyOpticalNoise, type OpticalNoise } from "./optical-noise";

/** What one prefill computed: the cache in the requested format and the first token. */
export interface MockPrefillOutput {
  readonly cache: KvCache;
  readonly firstTokenId: number;
  readonly firstTokenLogprob: number;
}

/** A model the mock can prefill: real reference math, or synthetic KV of a real model's shape. */
export interface MockModel {
  readonly info: ModelInfo;
  /** FLOPs of computing `numTokens` new tokens after `pastTokens` cached ones. */
  flops(numTokens: number, pastTokens: number): number;
  /**
   * Computes the KV of `tokens[tokenStart..]` for `descriptor` (whose model fields this model
   * filled) and the first generated token (greedy, or seeded with `sample`). With `noise`, K and V
   * carry that analog noise within the descriptor's declared bound; the first token comes from the
   * exact logits.
   */
  prefill(
    tokens: Uint32Array,
    descriptor: KvDescriptor,
    sample: (logits: Float32Array) => number,
    signal: AbortSignal,
    noise?: OpticalNoise,
  ): MockPrefillOutput;
}

/** Names of models the mock can load by name: reference presets and synthetic shapes. */
export function toMockModelNames(): string[] {
  return [...toPresetNames(), ...toSyntheticShapeNames()];
}

/** A model by name (`opal-tiny`, `opal-small`, or a synthetic shape such as `llama-3-8b`). */
export function createNamedMockModel(name: string): MockModel {
  if (isPresetName(name)) return createReferenceMockModel(name, createPresetWeights(name));
  if (isSyntheticName(name)) return createSyntheticMockModel(name);
  throw unknownModel(name);
}

/**
 * The FLOPs the mock counts for prefilling `promptTokens` tokens, none cached, on the model named
 * `name` (one of {@link toMockModelNames}): its simulated device time under a profile is
 * `simulatedTimeUs(profile, mockModelFlops(name, promptTokens))`, whatever profile serves it.
 * INVALID_ARGUMENT for an unknown name.
 */
export function mockModelFlops(name: string, promptTokens: number): number {
  if (isPresetName(name)) return prefillFlops(toPresetConfig(name), promptTokens);
  if (isSyntheticName(name)) return syntheticFlops(syntheticShape(name), promptTokens, 0);
  throw unknownModel(name);
}

function isPresetName(name: string): name is "opal-tiny" | "opal-small" {
  return (toPresetNames() as string[]).includes(name);
}

function isSyntheticName(name: string): name is Parameters<typeof syntheticShape>[0] {
  return (toSyntheticShapeNames() as string[]).includes(name);
}

function unknownModel(name: string): OpalError {
  return new OpalError(
    Code.INVALID_ARGUMENT,
    `unknown model ${JSON.stringify(name)} (expected one of ${toMockModelNames().join(", ")})`,
    { reason: Reason.MODEL_CONFIG_INVALID },
  );
}

/**
 * FLOPs of a Llama-like model of a synthetic shape computing `n` tokens after `past` cached ones:
 * 2 × parameters per token (12 × hidden² a layer) plus the quadratic attention term.
 */
function syntheticFlops(shape: SyntheticModelShape, n: number, past: number): number {
  const a = shape.attention;
  const hidden = a.kind === "mha" ? a.numKvHeads * a.headDim * 4 : 7168;
  const paramsPerLayer = 12 * hidden * hidden;
  return (
    2 * n * shape.numLayers * paramsPerLayer + 2 * n * (2 * past + n + 1) * hidden * shape.numLayers
  );
}

/** A model computed with the reference transformer. */
export function createReferenceMockModel(modelId: string, weights: ModelWeights): MockModel {
  const model: ReferenceModel = createReferenceModel(weights);
  const config = model.config;
  return {
    info: {
      modelId,
      fingerprint: model.fingerprint,
      architecture: "LlamaForCausalLM",
      numLayers: config.numHiddenLayers,
      attention: { kind: "mha", numKvHeads: config.numKeyValueHeads, headDim: config.headDim },
      vocabSize: config.vocabSize,
      maxPositionEmbeddings: config.maxPositionEmbeddings,
    },
    flops: (numTokens, pastTokens) => prefillFlops(config, numTokens, { pastTokens }),
    prefill(tokens, descriptor, sample, signal, noise) {
      const { cache, logits } = model.prefill(tokens, { signal });
      const heads = config.numKeyValueHeads;
      const dim = config.headDim;
      const layers: Partial<Record<KvPart, Uint8Array>>[] = [];
      for (let layer = 0; layer < config.numHiddenLayers; layer++) {
        if (noise) {
          const site = { layer, numTokens: cache.numTokens, rowLength: heads * dim };
          applyOpticalNoise(cache.keys[layer]!, { ...site, part: 0 }, noise, descriptor.numerics);
          applyOpticalNoise(cache.values[layer]!, { ...site, part: 1 }, noise, descriptor.numerics);
        }
        layers.push({
          ...encodePart(cache.keys[layer]!, "k", descriptor, heads, dim),
          ...encodePart(cache.values[layer]!, "v", descriptor, heads, dim),
        });
      }
      const firstTokenId = sample(logits);
      return {
        cache: fromKvParts(descriptor, layers),
        firstTokenId,
        firstTokenLogprob: logSoftmaxAt(logits, firstTokenId),
      };
    },
  };
}

/** A model whose KV is synthetic (deterministic, prefix-consistent) at a real model's shape. */
function createSyntheticMockModel(name: Parameters<typeof syntheticShape>[0]): MockModel {
  const shape = syntheticShape(name);
  const synthetic = createSyntheticKv(shape);
  const a = shape.attention;
  const vocabSize = 128_256;
  return {
    info: {
      modelId: name,
      fingerprint: synthetic.fingerprint,
      architecture: a.kind === "mla" ? "DeepseekV3ForCausalLM" : "LlamaForCausalLM",
      numLayers: shape.numLayers,
      attention: a,
      vocabSize,
      maxPositionEmbeddings: 131_072,
    },
    flops: (n, past) => syntheticFlops(shape, n, past),
    prefill(tokens, descriptor) {
      const layers: Partial<Record<KvPart, Uint8Array>>[] = [];
      for (let layer = 0; layer < descriptor.numLayers; layer++) {
        const parts: Partial<Record<KvPart, Uint8Array>> = {};
        for (const part of partsOf(descriptor)) {
          const request = {
            tokens,
            layer,
            part,
            tokenStart: descriptor.tokenStart,
            tokenCount: descriptor.tokenCount,
            headRange: descriptor.headRange,
            dtype: descriptor.dtype,
            layout: descriptor.layout,
            scaleScheme: descriptor.scaleScheme,
          };
          const bytes = new Uint8Array(synthetic.byteLengthOf(request));
          synthetic.fill(bytes, request);
          parts[part] = bytes;
        }
        layers.push(parts);
      }
      let h = 2166136261;
      for (const t of tokens) h = Math.imul(h ^ t, 16777619);
      return {
        cache: fromKvParts(descriptor, layers),
        firstTokenId: (h >>> 0) % vocabSize,
        firstTokenLogprob: 0,
      };
    },
  };
}

/** Parses an HF config for LoadModel, mapping failures to MODEL_CONFIG_INVALID. */
export function parseHfConfig(configJson: string) {
  try {
    return fromHfConfig(JSON.parse(configJson));
  } catch (error) {
    throw new OpalError(Code.INVALID_ARGUMENT, `config_json: ${(error as Error).message}`, {
      reason: Reason.MODEL_CONFIG_INVALID,
      cause: error,
    });
  }
}

/**
 * One part (`k` or `v`) of a layer in the descriptor's token range, head range, dtype, scales and
 * layout, from the reference cache's f32 rows `[tokens][numKvHeads][headDim]`.
 */
function encodePart(
  rows: Float32Array,
  part: "k" | "v",
  d: KvDescriptor,
  numKvHeads: number,
  headDim: number,
): Partial<Record<KvPart, Uint8Array>> {
  const t = d.tokenCount;
  const { start, count } = d.headRange;
  // Select the token range and head range into a contiguous NHD f32 block.
  const nhd = new Float32Array(t * count * headDim);
  for (let i = 0; i < t; i++) {
    const src = ((d.tokenStart + i) * numKvHeads + start) * headDim;
    nhd.set(rows.subarray(src, src + count * headDim), i * count * headDim);
  }
  let data: Uint8Array;
  let scales: Float32Array | undefined;
  if (d.scaleScheme !== "none" || d.dtype === "int8") {
    const q = quantizeKv(nhd, {
      dtype: d.dtype,
      scaleScheme: d.scaleScheme,
      shape: { tokenCount: t, headCount: count, headDim, layout: "nhd" },
    });
    data = q.data;
    scales = q.scales;
  } else {
    // PF-22: narrowing saturates (finite values beyond the range become ±max, never NaN or inf).
    data = fromFloat32(nhd, d.dtype, { saturate: true });
  }
  if (d.layout === "hnd") {
    const rowBytes = data.byteLength / (t * count);
    data = transposeKvPart(data, {
      tokenCount: t,
      headCount: count,
      rowBytes,
      from: "nhd",
      to: "hnd",
    });
    // Per-token and per-head scales are indexed by token or head, not by layout: no change.
  }
  const out: Partial<Record<KvPart, Uint8Array>> = { [part]: data };
  if (d.scaleScheme !== "none" && scales) {
    out[part === "k" ? "k_scale" : "v_scale"] = new Uint8Array(
      scales.buffer,
      scales.byteOffset,
      scales.byteLength,
    );
  }
  return out;
}

function logSoftmaxAt(logits: Float32Array, index: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (const x of logits) if (x > max) max = x;
  let sum = 0;
  for (const x of logits) sum += Math.exp(x - max);
  return logits[index]! - max - Math.log(sum);
}
