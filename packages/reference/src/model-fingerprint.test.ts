import { describe, expect, it } from "vitest";
import { createPresetWeights } from "./create-preset-weights";
import { toModelFingerprint } from "./model-fingerprint";
import { createReferenceModel } from "./reference-model";

describe("toModelFingerprint", () => {
  it("changes with any weight bit and with the config, and is lower-case hex SHA-256", () => {
    const weights = createPresetWeights("opal-tiny");
    const base = toModelFingerprint(weights);
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    const norm = Float32Array.from(weights.norm);
    norm[5] = Math.fround(norm[5]! + 2 ** -20);
    expect(toModelFingerprint({ ...weights, norm })).not.toBe(base);
    const config = { ...weights.config, rmsNormEps: 1e-6 };
    expect(toModelFingerprint({ ...weights, config })).not.toBe(base);
    expect(createReferenceModel(weights).fingerprint).toBe(base);
    expect(toModelFingerprint(createPresetWeights("opal-small"))).not.toBe(base);
  });
});

describe("createReferenceModel", () => {
  it("rejects weights whose sizes do not match the config", () => {
    const weights = createPresetWeights("opal-tiny");
    const layers = [...weights.layers];
    layers[1] = { ...layers[1]!, kProj: new Float32Array(10) };
    expect(() => createReferenceModel({ ...weights, layers })).toThrow(
      /weight model\.layers\.1\.self_attn\.k_proj\.weight has 10 elements \(expected shape \[32, 64\] = 2048\)/,
    );
    expect(() => createReferenceModel({ ...weights, layers: layers.slice(0, 1) })).toThrow(
      /weights have 1 layers \(config says 2\)/,
    );
  });
});
