import { describe, expect, it } from "vitest";
import { mhaDescriptor, randomCache } from "../test/fixtures";
import {
  decodeSafetensors,
  decodeVllmExampleLayer,
  encodeSafetensors,
  encodeVllmExampleLayer,
  vllmExampleFits,
  vllmStaticScale,
} from "./index";

describe("vLLM ExampleConnector layer files", () => {
  it("says which vLLM version and layout a kv_cache shape fits", () => {
    expect(vllmExampleFits([32, 8, 256])).toEqual([
      {
        vllmVersion: "0.29",
        attention: { kind: "mha", numKvHeads: 8, headDim: 128 },
        tokenCount: 32,
        shapeName: "[T, H, C]",
      },
    ]);
    expect(vllmExampleFits([2, 32, 1024]).map((f) => [f.vllmVersion, f.tokenCount])).toEqual([
      ["0.28", 32],
      ["0.29", 2],
    ]);
    expect(vllmExampleFits([48, 576]).map((f) => f.vllmVersion)).toEqual(["0.28", "0.29"]);
    expect(vllmExampleFits([32, 8, 255])).toEqual([]);
    expect(vllmExampleFits([1, 2, 3, 4])).toEqual([]);
  });

  it("reads the old [2, T, H, D] shape and refuses dtypes the descriptor does not have", () => {
    const d = mhaDescriptor({ tokenCount: 16, dtype: "f16" });
    const cache = randomCache(d);
    const old = decodeSafetensors(
      encodeVllmExampleLayer(cache, 0, { vllmVersion: "0.28" }),
    ).tensors.get("kv_cache")!;
    const fourD = encodeSafetensors([["kv_cache", { ...old, shape: [2, 16, 4, 8] }]]);
    const parts = decodeVllmExampleLayer(fourD, d);
    expect(Buffer.compare(parts.k!, cache.part(0, "k"))).toBe(0);
    expect(() => decodeVllmExampleLayer(fourD, { ...d, dtype: "fp8_e4m3fn" })).toThrow(
      /kv_cache dtype F16, expected U8 or F8_E4M3/,
    );
    expect(() => encodeVllmExampleLayer(randomCache({ ...d, dtype: "int8" }), 0)).toThrow(/int8/);
  });

  it("takes one static scale for every layer or one per layer, each finite and > 0", () => {
    expect(vllmStaticScale(0.5, 7, "kScale")).toBe(0.5);
    expect(vllmStaticScale([1, 2], 1, "kScale")).toBe(2);
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY])
      expect(() => vllmStaticScale(bad, 0, "vScale")).toThrow(/vScale for layer 0/);
    expect(() => vllmStaticScale([1], 3, "kScale")).toThrow(/kScale for layer 3 is undefined/);
  });
});
