import { fromFloat32, toFloat32 } from "@opal/kv";
import { describe, expect, it } from "vitest";
import { createPresetWeights, toPresetNames } from "./create-preset-weights";
import { toModelFingerprint } from "./model-fingerprint";
import { toNamedWeights } from "./model-weights";

describe("createPresetWeights", () => {
  it("is deterministic per seed and differs between seeds", () => {
    const a = toModelFingerprint(createPresetWeights("opal-tiny"));
    expect(toModelFingerprint(createPresetWeights("opal-tiny", { seed: 0 }))).toBe(a);
    expect(toModelFingerprint(createPresetWeights("opal-tiny", { seed: 1 }))).not.toBe(a);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
  });

  it("has the documented shapes", () => {
    const tiny = createPresetWeights("opal-tiny").config;
    expect(tiny).toMatchObject({
      numHiddenLayers: 2,
      hiddenSize: 64,
      numAttentionHeads: 4,
      numKeyValueHeads: 2,
      headDim: 16,
      vocabSize: 258,
    });
    const small = createPresetWeights("opal-small").config;
    expect(small).toMatchObject({
      numHiddenLayers: 4,
      hiddenSize: 256,
      numAttentionHeads: 8,
      numKeyValueHeads: 4,
      headDim: 32,
    });
    expect(toPresetNames()).toEqual(["opal-tiny", "opal-small"]);
  });

  it("uses only values exact in f16 and bf16", () => {
    for (const w of toNamedWeights(createPresetWeights("opal-tiny"))) {
      expect(toFloat32(fromFloat32(w.data, "bf16"), "bf16")).toEqual(w.data);
      expect(toFloat32(fromFloat32(w.data, "f16"), "f16")).toEqual(w.data);
    }
  });

  it("rejects unknown names", () => {
    expect(() => createPresetWeights("opal-huge" as "opal-tiny")).toThrow(
      /unknown preset "opal-huge"/,
    );
  });
});
