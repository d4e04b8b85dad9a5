import { createHash } from "node:crypto";
import type { ModelConfig } from "./model-config";
import { type ModelWeights, toNamedWeights } from "./model-weights";

const CONFIG_KEYS = [
  "vocabSize",
  "hiddenSize",
  "intermediateSize",
  "numHiddenLayers",
  "numAttentionHeads",
  "numKeyValueHeads",
  "headDim",
  "rmsNormEps",
  "ropeTheta",
  "ropeScaling",
  "maxPositionEmbeddings",
  "tieWordEmbeddings",
  "bosTokenId",
  "eosTokenId",
] as const;

/** Canonical JSON of a config: fixed key order, rope scaling keys sorted. */
function canonicalConfig(config: ModelConfig): string {
  const entries = CONFIG_KEYS.map((key) => {
    let value: unknown = config[key];
    if (key === "ropeScaling" && value !== null) {
      const s = config.ropeScaling!;
      value = {
        factor: s.factor,
        highFreqFactor: s.highFreqFactor,
        lowFreqFactor: s.lowFreqFactor,
        originalMaxPositionEmbeddings: s.originalMaxPositionEmbeddings,
        ropeType: s.ropeType,
      };
    }
    return [key, value];
  });
  return JSON.stringify(Object.fromEntries(entries));
}

/**
 * Lower-case hex SHA-256 identifying a model's architecture, shapes and weights. Hashes, in order:
 * the line `opal-reference-fingerprint-v1`, the canonical JSON of the config (fixed key order), then
 * for each tensor of {@link toWeightLayout} order its Hugging Face name, its shape as JSON and its
 * f32 little-endian bytes (lengths prefixed). Two models have the same fingerprint exactly when they
 * compute the same function bit for bit (same config, same f32 weights); the storage dtype of a
 * checkpoint matters only through the f32 values it decodes to.
 */
export function toModelFingerprint(weights: ModelWeights): string {
  const hash = createHash("sha256");
  const text = (s: string) => {
    const bytes = Buffer.from(s, "utf8");
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(bytes.length));
    hash.update(len);
    hash.update(bytes);
  };
  text("opal-reference-fingerprint-v1");
  text(canonicalConfig(weights.config));
  for (const tensor of toNamedWeights(weights)) {
    text(tensor.name);
    text(JSON.stringify(tensor.shape));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(tensor.data.byteLength));
    hash.update(len);
    hash.update(new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength));
  }
  return hash.digest("hex");
}
