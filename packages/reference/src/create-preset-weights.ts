import { Code, OpalError, Reason } from "@opal/core";
import type { ModelConfig } from "./model-config";
import type { LayerWeights, ModelWeights } from "./model-weights";
import { createPrng, type Prng } from "./prng";

/** Names of the seeded presets. */
export type PresetName = "opal-tiny" | "opal-small";

/** The preset names, in size order. */
export function toPresetNames(): PresetName[] {
  return ["opal-tiny", "opal-small"];
}

/**
 * The config of a preset. Both use the byte-level vocabulary of {@link createByteTokenizer}
 * (258 tokens: bytes 0-255, BOS 256, EOS 257).
 *
 * - `opal-tiny`: 2 layers, hidden 64, MLP 192, 4 query / 2 KV heads of 16 dims, rope θ 10000,
 *   tied embeddings, up to 4096 positions.
 * - `opal-small`: 4 layers, hidden 256, MLP 768, 8 query / 4 KV heads of 32 dims, rope θ 500000 with
 *   Llama 3 scaling (factor 8, low 1, high 4, original 1024 positions), separate LM head, up to
 *   8192 positions.
 */
export function toPresetConfig(name: PresetName): ModelConfig {
  const common = { vocabSize: 258, rmsNormEps: 1e-5, bosTokenId: 256, eosTokenId: 257 };
  if (name === "opal-tiny") {
    return {
      ...common,
      hiddenSize: 64,
      intermediateSize: 192,
      numHiddenLayers: 2,
      numAttentionHeads: 4,
      numKeyValueHeads: 2,
      headDim: 16,
      ropeTheta: 10000,
      ropeScaling: null,
      maxPositionEmbeddings: 4096,
      tieWordEmbeddings: true,
    };
  }
  if (name === "opal-small") {
    return {
      ...common,
      hiddenSize: 256,
      intermediateSize: 768,
      numHiddenLayers: 4,
      numAttentionHeads: 8,
      numKeyValueHeads: 4,
      headDim: 32,
      ropeTheta: 500000,
      ropeScaling: {
        ropeType: "llama3",
        factor: 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositionEmbeddings: 1024,
      },
      maxPositionEmbeddings: 8192,
      tieWordEmbeddings: false,
    };
  }
  throw new OpalError(
    Code.INVALID_ARGUMENT,
    `unknown preset ${JSON.stringify(name)} (expected "opal-tiny" or "opal-small")`,
    { reason: Reason.MODEL_WEIGHTS_INVALID },
  );
}

/**
 * `length` values `m * 2^-e` with integer m uniform in [-127, 127] and the power of two chosen so the
 * standard deviation is close to `std`: exactly representable in f32, f16 and bf16, so a preset
 * exported in any of those dtypes loads back bit for bit.
 */
function quantizedUniform(prng: Prng, length: number, std: number): Float32Array {
  const halfWidth = std * Math.sqrt(3);
  const step = 2 ** Math.round(Math.log2(halfWidth / 127));
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = ((prng.nextUint32() % 255) - 127) * step;
  return out;
}

/** Norm weights `1 + m/64`, m integer in [-8, 8]: near 1, exact in f16 and bf16. */
function normWeights(prng: Prng, length: number): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = 1 + ((prng.nextUint32() % 17) - 8) / 64;
  return out;
}

/**
 * Deterministic random weights for a preset: the same `name` and `options.seed` (default 0, any
 * safe integer) give the same bytes on every platform. Linear weights have standard deviation
 * about `1/sqrt(fanIn)` (output projections scaled down by `1/sqrt(2 * layers)`), embeddings about 1,
 * norms near 1; LM head rows of printable ASCII are scaled up by 2 and the other rows down by 2.
 * All values are exact in f16 and bf16. Throws INVALID_ARGUMENT for an unknown name.
 */
export function createPresetWeights(
  name: PresetName,
  options: { readonly seed?: number } = {},
): ModelWeights {
  const config = toPresetConfig(name);
  const seed = options.seed ?? 0;
  if (!Number.isSafeInteger(seed)) {
    throw new OpalError(Code.INVALID_ARGUMENT, `seed must be a safe integer (got ${seed})`, {
      reason: Reason.INVALID_FIELD,
    });
  }
  const prng = createPrng(seed * 4 + (name === "opal-tiny" ? 1 : 2));
  const h = config.hiddenSize;
  const q = config.numAttentionHeads * config.headDim;
  const kv = config.numKeyValueHeads * config.headDim;
  const inter = config.intermediateSize;
  const residualScale = 1 / Math.sqrt(2 * config.numHiddenLayers);
  const embedTokens = quantizedUniform(prng, config.vocabSize * h, 1);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.numHiddenLayers; l++) {
    layers.push({
      inputLayernorm: normWeights(prng, h),
      qProj: quantizedUniform(prng, q * h, 1 / Math.sqrt(h)),
      kProj: quantizedUniform(prng, kv * h, 1 / Math.sqrt(h)),
      vProj: quantizedUniform(prng, kv * h, 1 / Math.sqrt(h)),
      oProj: quantizedUniform(prng, h * q, residualScale / Math.sqrt(q)),
      postAttentionLayernorm: normWeights(prng, h),
      gateProj: quantizedUniform(prng, inter * h, 1 / Math.sqrt(h)),
      upProj: quantizedUniform(prng, inter * h, 1 / Math.sqrt(h)),
      downProj: quantizedUniform(prng, h * inter, residualScale / Math.sqrt(inter)),
    });
  }
  const norm = normWeights(prng, h);
  const lmHead = config.tieWordEmbeddings
    ? embedTokens
    : quantizedUniform(prng, config.vocabSize * h, 1 / Math.sqrt(h));
  favourPrintable(lmHead, h);
  return { config, embedTokens, layers, norm, lmHead };
}

/**
 * Scales LM head rows of printable ASCII and newline by 2 and the others by 1/2 (exact in every
 * dtype), so that greedy text from a preset looks like text.
 */
function favourPrintable(lmHead: Float32Array, h: number): void {
  const rows = lmHead.length / h;
  for (let r = 0; r < rows; r++) {
    const f = (r >= 32 && r < 127) || r === 10 ? 2 : 0.5;
    for (let i = r * h; i < (r + 1) * h; i++) lmHead[i] = lmHead[i]! * f;
  }
}
