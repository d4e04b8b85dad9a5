import { Code } from "@opal/core";
import { toFloat32 } from "@opal/kv";
import { describe, expect, it } from "vitest";
import { createByteTokenizer } from "./byte-tokenizer";
import { createPresetWeights } from "./create-preset-weights";
import { createReferenceModel } from "./reference-model";
import { fromKvCache, toKvCache } from "./to-kv-cache";

const model = createReferenceModel(createPresetWeights("opal-tiny"));
const prompt = createByteTokenizer().encode("hand the KV cache to a decoder");

describe("toKvCache / fromKvCache", () => {
  it("round-trips f32 in both layouts bit for bit, so decoding continues identically", () => {
    const { cache } = model.prefill(prompt);
    for (const layout of ["nhd", "hnd"] as const) {
      const kv = toKvCache(cache, { modelFingerprint: model.fingerprint, layout });
      expect(kv.descriptor).toMatchObject({
        numLayers: 2,
        attention: { kind: "mha", numKvHeads: 2, headDim: 16 },
        tokenCount: prompt.length,
        layout,
        dtype: "f32",
      });
      const rebuilt = fromKvCache(model.config, kv);
      const original = model.decodeStep(65, model.prefill(prompt).cache);
      expect(model.decodeStep(65, rebuilt)).toEqual(original);
    }
  });

  it("writes bf16 rows equal to the rounded reference and slices token ranges", () => {
    const { cache } = model.prefill(prompt);
    const kv = toKvCache(cache, {
      modelFingerprint: model.fingerprint,
      dtype: "bf16",
      tokenStart: 3,
      tokenCount: 5,
    });
    const row = 2 * 16;
    const got = toFloat32(kv.part(1, "v"), "bf16");
    const expected = cache.values[1]!.subarray(3 * row, 8 * row);
    for (let i = 0; i < expected.length; i++) {
      expect(Math.abs(got[i]! - expected[i]!)).toBeLessThanOrEqual(
        Math.abs(expected[i]!) * 2 ** -8,
      );
    }
    expect(() => fromKvCache(model.config, kv)).toThrow(/starts at position 3/);
    expect(() => toKvCache(cache, { modelFingerprint: model.fingerprint, tokenStart: 40 })).toThrow(
      expect.objectContaining({ code: Code.OUT_OF_RANGE }),
    );
  });

  it("refuses caches of another model shape", () => {
    const { cache } = model.prefill(prompt);
    const kv = toKvCache(cache, { modelFingerprint: model.fingerprint });
    const small = createPresetWeights("opal-small").config;
    expect(() => fromKvCache(small, kv)).toThrow(
      expect.objectContaining({ reason: "INVALID_FIELD" }),
    );
  });
});
