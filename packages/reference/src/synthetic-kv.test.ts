import { type KvDescriptor, partByteLength, toFloat32 } from "@opal/kv";
import { describe, expect, it } from "vitest";
import { createSyntheticKv, syntheticShape, toSyntheticShapeNames } from "./synthetic-kv";

const tokens = Uint32Array.from({ length: 300 }, (_, i) => (i * 2654435761) % 128000);
const llama = createSyntheticKv(syntheticShape("llama-3-8b"));

/** Byte equality without vitest's element-by-element diffing (fast on megabytes). */
function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

function fill(kv: typeof llama, request: Parameters<typeof llama.fill>[1]): Uint8Array {
  const out = new Uint8Array(kv.byteLengthOf(request));
  expect(kv.fill(out, request)).toBe(out.byteLength);
  return out;
}

describe("createSyntheticKv", () => {
  it("has the shapes of the real models", () => {
    expect(toSyntheticShapeNames().map((n) => syntheticShape(n))).toEqual([
      {
        name: "llama-3-8b",
        numLayers: 32,
        attention: { kind: "mha", numKvHeads: 8, headDim: 128 },
      },
      {
        name: "llama-3-70b",
        numLayers: 80,
        attention: { kind: "mha", numKvHeads: 8, headDim: 128 },
      },
      {
        name: "qwen2.5-7b",
        numLayers: 28,
        attention: { kind: "mha", numKvHeads: 4, headDim: 128 },
      },
      {
        name: "deepseek-v3",
        numLayers: 61,
        attention: { kind: "mla", latentDim: 512, ropeDim: 64 },
      },
    ]);
    // bf16 KV per token across all layers: 128 KiB for Llama-3-8B, 68.6 KiB for DeepSeek-V3.
    const perToken = (name: "llama-3-8b" | "deepseek-v3") => {
      const kv = createSyntheticKv(syntheticShape(name));
      const parts = name === "deepseek-v3" ? (["latent"] as const) : (["k", "v"] as const);
      return (
        parts.reduce(
          (sum, part) =>
            sum + kv.byteLengthOf({ layer: 0, part, tokenStart: 0, tokenCount: 1, dtype: "bf16" }),
          0,
        ) * kv.shape.numLayers
      );
    };
    expect(perToken("llama-3-8b")).toBe(128 * 1024);
    expect(perToken("deepseek-v3")).toBe(61 * 576 * 2);
  });

  it("is deterministic and prefix-consistent: a prompt's rows equal the same rows of a longer prompt", () => {
    const base = { layer: 3, part: "k", dtype: "bf16" } as const;
    const short = fill(llama, {
      ...base,
      tokens: tokens.subarray(0, 100),
      tokenStart: 0,
      tokenCount: 100,
    });
    const long = fill(llama, { ...base, tokens, tokenStart: 0, tokenCount: 300 });
    expect(same(long.subarray(0, short.byteLength), short)).toBe(true);
    expect(same(fill(llama, { ...base, tokens, tokenStart: 0, tokenCount: 300 }), long)).toBe(true);
    // A different earlier token changes every later row but none before it.
    const edited = Uint32Array.from(tokens);
    edited[50] = edited[50]! + 1;
    const other = fill(llama, { ...base, tokens: edited, tokenStart: 0, tokenCount: 300 });
    const rowBytes = 8 * 128 * 2;
    expect(same(other.subarray(0, 50 * rowBytes), long.subarray(0, 50 * rowBytes))).toBe(true);
    for (let p = 50; p < 300; p++) {
      const row = (b: Uint8Array) => b.subarray(p * rowBytes, (p + 1) * rowBytes);
      expect(same(row(other), row(long))).toBe(false);
    }
  });

  it("gives the same row for a (position, head) whatever the token range, head range, layout or alignment", () => {
    const base = { tokens, layer: 1, part: "v", dtype: "f16" } as const;
    const all = fill(llama, { ...base, tokenStart: 0, tokenCount: 300 });
    const rowBytes = 128 * 2;
    const slice = fill(llama, {
      ...base,
      tokenStart: 17,
      tokenCount: 9,
      headRange: { start: 2, count: 3 },
      layout: "hnd",
    });
    for (let h = 0; h < 3; h++) {
      for (let t = 0; t < 9; t++) {
        const got = slice.subarray((h * 9 + t) * rowBytes, (h * 9 + t + 1) * rowBytes);
        const at = ((17 + t) * 8 + 2 + h) * rowBytes;
        expect(same(got, all.subarray(at, at + rowBytes))).toBe(true);
      }
    }
    const request = { ...base, tokenStart: 0, tokenCount: 300 };
    const unaligned = new Uint8Array(all.byteLength + 3).subarray(3);
    llama.fill(unaligned, request);
    expect(same(unaligned, all)).toBe(true);
    // Other layers and parts differ.
    expect(same(fill(llama, { ...request, layer: 2 }), all)).toBe(false);
    expect(same(fill(llama, { ...request, part: "k" }), all)).toBe(false);
  });

  it("produces finite values with magnitudes in [1/32, 8) in every float dtype", () => {
    const mla = createSyntheticKv(syntheticShape("deepseek-v3"));
    for (const dtype of ["f32", "f16", "bf16", "fp8_e4m3fn", "fp8_e5m2"] as const) {
      for (const [kv, part] of [
        [llama, "k"],
        [mla, "latent"],
      ] as const) {
        const bytes = fill(kv, { tokens, layer: 0, part, tokenStart: 0, tokenCount: 64, dtype });
        const values = toFloat32(bytes, dtype);
        let min = Number.POSITIVE_INFINITY;
        let max = 0;
        let negative = 0;
        for (const v of values) {
          const a = Math.abs(v);
          min = Math.min(min, a);
          max = Math.max(max, a);
          if (v < 0) negative++;
        }
        expect(Number.isFinite(max)).toBe(true);
        expect(min).toBeGreaterThanOrEqual(1 / 32);
        expect(max).toBeLessThan(8);
        expect(negative / values.length).toBeGreaterThan(0.4);
        expect(negative / values.length).toBeLessThan(0.6);
      }
    }
    const int8 = new Int8Array(
      fill(llama, { tokens, layer: 0, part: "k", tokenStart: 0, tokenCount: 64, dtype: "int8" })
        .buffer,
    );
    expect(Math.min(...int8)).toBe(-64);
    expect(Math.max(...int8)).toBe(63);
    const scales = fill(llama, {
      tokens,
      layer: 0,
      part: "k_scale",
      tokenStart: 0,
      tokenCount: 4,
      dtype: "int8",
      scaleScheme: "per_token",
    });
    expect(Array.from(new Float32Array(scales.buffer))).toEqual([0.0625, 0.0625, 0.0625, 0.0625]);
  });

  it("takes a KvDescriptor spread with tokens, layer and part, and sizes parts as @opal/kv does", () => {
    const descriptor: KvDescriptor = {
      modelFingerprint: llama.fingerprint,
      numLayers: 32,
      attention: { kind: "mha", numKvHeads: 8, headDim: 128 },
      headRange: { start: 4, count: 4 },
      dtype: "fp8_e4m3fn",
      scaleScheme: "per_head",
      layout: "hnd",
      tokenStart: 16,
      tokenCount: 48,
      blockSizeTokens: 16,
      numerics: {
        deviceKind: "reference",
        precisionPath: "synthetic",
        bitExact: true,
        maxAbsError: 0,
        maxRelError: 0,
      },
    };
    for (const part of ["k", "v", "k_scale", "v_scale"] as const) {
      const request = { ...descriptor, tokens, layer: 5, part };
      expect(llama.byteLengthOf(request)).toBe(partByteLength(descriptor, part));
      expect(fill(llama, request).byteLength).toBe(partByteLength(descriptor, part));
    }
  });

  it("rejects requests outside the shape", () => {
    const base = {
      tokens,
      layer: 0,
      part: "k",
      tokenStart: 0,
      tokenCount: 4,
      dtype: "bf16",
    } as const;
    const out = new Uint8Array(1 << 20);
    expect(() => llama.fill(out, { ...base, layer: 32 })).toThrow(
      /layer 32 out of range \(model has 32 layers\)/,
    );
    expect(() => llama.fill(out, { ...base, part: "latent" })).toThrow(/part latent/);
    expect(() => llama.fill(out, { ...base, headRange: { start: 6, count: 4 } })).toThrow(
      /head range 6\+4/,
    );
    expect(() => llama.fill(out, { ...base, tokens: tokens.subarray(0, 2) })).toThrow(
      /tokens has 2 ids/,
    );
    expect(() => llama.fill(new Uint8Array(10), base)).toThrow(/target has 10 bytes/);
    const mla = createSyntheticKv(syntheticShape("deepseek-v3"));
    expect(() => mla.fill(out, { ...base, part: "latent", layout: "hnd" })).toThrow(
      /layout hnd invalid for mla/,
    );
  });
});
