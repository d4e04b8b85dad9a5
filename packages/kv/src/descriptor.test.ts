import { describe, expect, it } from "vitest";
import { mhaDescriptor, mlaDescriptor } from "../test/fixtures";
import {
  assertValidDescriptor,
  cacheByteLength,
  dtypeByteSize,
  type KvDescriptor,
  KvFormatError,
  layerByteLength,
  partByteLength,
  partsOf,
} from "./index";

describe("descriptor", () => {
  it("sizes mha parts as tokens x heads x dim x dtype bytes, scales as f32", () => {
    const d = mhaDescriptor({
      dtype: "fp8_e4m3fn",
      scaleScheme: "per_token",
      headRange: { start: 1, count: 2 },
    });
    expect(partsOf(d)).toEqual(["k", "v", "k_scale", "v_scale"]);
    expect(partByteLength(d, "k")).toBe(37 * 2 * 8);
    expect(partByteLength(d, "k_scale")).toBe(37 * 4);
    expect(layerByteLength(d)).toBe(2 * 37 * 16 + 2 * 37 * 4);
    expect(cacheByteLength(d)).toBe(3 * layerByteLength(d));
    expect(partByteLength({ ...d, scaleScheme: "per_head" }, "v_scale")).toBe(8);
    expect(partByteLength({ ...d, scaleScheme: "per_tensor" }, "v_scale")).toBe(4);
  });

  it("sizes mla as one head of latent + rope", () => {
    const d = mlaDescriptor({ dtype: "bf16" });
    expect(partsOf(d)).toEqual(["latent"]);
    expect(partByteLength(d, "latent")).toBe(37 * 20 * 2);
    expect(() => partByteLength(d, "k")).toThrow(/part k is not one of latent/);
  });

  it("knows the dtype sizes", () => {
    expect(
      ["f32", "f16", "bf16", "fp8_e4m3fn", "fp8_e5m2", "int8"].map((d) =>
        dtypeByteSize(d as never),
      ),
    ).toEqual([4, 2, 2, 1, 1, 1]);
    expect(() => dtypeByteSize("f64" as never)).toThrow(KvFormatError);
  });

  const bad: [string, Partial<KvDescriptor> | Record<string, unknown>, string, RegExp][] = [
    [
      "fingerprint",
      { modelFingerprint: "ABC" },
      "INVALID_DESCRIPTOR",
      /modelFingerprint: expected 1 to 128 lower-case hex digits, got "ABC"/,
    ],
    [
      "layers",
      { numLayers: 0 },
      "INVALID_DESCRIPTOR",
      /numLayers: expected an integer in \[1, 65536\], got 0/,
    ],
    [
      "head range",
      { headRange: { start: 3, count: 2 } },
      "INVALID_DESCRIPTOR",
      /headRange.count: expected an integer in \[1, 1\], got 2/,
    ],
    ["dtype", { dtype: "f64" }, "UNSUPPORTED_DTYPE", /dtype/],
    [
      "scales on f16",
      { dtype: "f16", scaleScheme: "per_token" },
      "INVALID_DESCRIPTOR",
      /scaleScheme/,
    ],
    ["int8 without scales", { dtype: "int8" }, "INVALID_DESCRIPTOR", /int8/],
    ["layout", { layout: "thd" }, "UNSUPPORTED_LAYOUT", /layout/],
    ["tokens", { tokenCount: 0 }, "INVALID_DESCRIPTOR", /tokenCount/],
    [
      "bit exact with error",
      {
        numerics: {
          deviceKind: "optical",
          precisionPath: "",
          bitExact: true,
          maxAbsError: 0.1,
          maxRelError: 0,
        },
      },
      "INVALID_DESCRIPTOR",
      /maxAbsError/,
    ],
    [
      "huge part",
      { tokenCount: 2 ** 40, attention: { kind: "mha", numKvHeads: 4, headDim: 8 } },
      "LENGTH_LIMIT",
      /2\^40/,
    ],
    [
      "huge per_token scale part (4 bytes per token of a 1-byte part)",
      {
        tokenCount: 2 ** 40,
        attention: { kind: "mha", numKvHeads: 1, headDim: 1 },
        headRange: { start: 0, count: 1 },
        dtype: "int8",
        scaleScheme: "per_token",
        numLayers: 1,
      },
      "LENGTH_LIMIT",
      /2\^40/,
    ],
    [
      "huge cache",
      {
        numLayers: 65_536,
        tokenCount: 2 ** 28,
        attention: { kind: "mha", numKvHeads: 64, headDim: 64 },
        headRange: { start: 0, count: 64 },
        dtype: "fp8_e5m2",
      },
      "LENGTH_LIMIT",
      /MAX_SAFE_INTEGER/,
    ],
  ];
  for (const [name, overrides, reason, message] of bad) {
    it(`rejects a bad ${name} with ${reason}`, () => {
      const d = mhaDescriptor(overrides as Partial<KvDescriptor>);
      expect(() => assertValidDescriptor(d)).toThrow(message);
      try {
        assertValidDescriptor(d);
      } catch (error) {
        expect(error).toBeInstanceOf(KvFormatError);
        expect((error as KvFormatError).reason).toBe(reason);
        expect((error as KvFormatError).message).toMatch(/^\[invalid_argument\]/);
      }
    });
  }

  it("rejects hnd for mla and non-objects", () => {
    expect(() => assertValidDescriptor(mlaDescriptor({ layout: "hnd" }))).toThrow(/"nhd" for mla/);
    expect(() => assertValidDescriptor(null as never)).toThrow(KvFormatError);
    expect(() => assertValidDescriptor({} as never)).toThrow(KvFormatError);
  });
});
