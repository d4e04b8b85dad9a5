import { describe, expect, it } from "vitest";
import { coordinateCache, mhaDescriptor, mlaDescriptor } from "../test/fixtures";
import { KvFormatError } from "./kv-format-error";
import { resolveVllmPoolLayout, VLLM_KV_CACHE_LAYOUTS } from "./vllm-kv-cache-layout";
import {
  fromVllmStandardLayer,
  toVllmStandardLayer,
  type VllmStandardPoolOptions,
  vllmStandardGeometry,
} from "./vllm-standard-pool";

// The byte-exact proof against vLLM's own tensor views is packages/client/test/vllm-pool-golden.test.ts
// (torch peer). These tests pin the rules OPAL states and the refusals.

function reason(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    if (error instanceof KvFormatError)
      return `${error.reason} ${error.message.replace(/^\[\w+\] /, "")}`;
    throw error;
  }
  return undefined;
}

describe("resolveVllmPoolLayout: the layout is stated, never guessed", () => {
  it("takes each KVCacheLayout member, the aliases with a version, and the legacy names", () => {
    for (const layout of VLLM_KV_CACHE_LAYOUTS) {
      expect(resolveVllmPoolLayout({ layout })).toEqual({ family: "standard", layout });
    }
    expect(resolveVllmPoolLayout({ layout: "NHD", vllmVersion: "0.29" })).toEqual({
      family: "standard",
      layout: "LBNHC",
    });
    expect(resolveVllmPoolLayout({ layout: "hnd", vllmVersion: "v0.30.1" })).toEqual({
      family: "standard",
      layout: "LBHNC",
    });
    expect(resolveVllmPoolLayout({ layout: "flashinfer_hnd" })).toEqual({
      family: "legacy",
      order: "flashinfer",
      physicalLayout: "hnd",
    });
    expect(resolveVllmPoolLayout({ vllmVersion: "0.28", order: "flash_attn" })).toEqual({
      family: "legacy",
      order: "flash_attn",
      physicalLayout: "nhd",
    });
    expect(resolveVllmPoolLayout({ vllmVersion: "0.27.2", attention: "mla" }).family).toBe(
      "legacy",
    );
  });

  it("refuses what does not say which family, or contradicts itself", () => {
    const cases: [Parameters<typeof resolveVllmPoolLayout>[0], string][] = [
      [{}, "UNSUPPORTED_LAYOUT layout: required"],
      [{ layout: "NHD" }, 'UNSUPPORTED_LAYOUT vllmVersion: required with layout "NHD"'],
      [{ order: "flash_attn", layout: "nhd" }, "UNSUPPORTED_LAYOUT vllmVersion: required"],
      [{ vllmVersion: "0.29" }, "UNSUPPORTED_LAYOUT layout: required with vllmVersion 0.29"],
      [
        { layout: "LBNHC", vllmVersion: "0.28" },
        "UNSUPPORTED_LAYOUT layout: LBNHC is a vLLM >= 0.29",
      ],
      [
        { layout: "flash_attn_nhd", vllmVersion: "0.29" },
        "UNSUPPORTED_LAYOUT layout: flash_attn_nhd is a vLLM <= 0.28",
      ],
      [
        { layout: "NHD", vllmVersion: "0.28" },
        "UNSUPPORTED_LAYOUT order: required with vllmVersion 0.28",
      ],
      [
        { layout: "NHD", vllmVersion: "0.29", order: "flashinfer" },
        "UNSUPPORTED_LAYOUT order: vLLM 0.29 has no",
      ],
      [{ layout: "LNBHC" }, "UNSUPPORTED_LAYOUT layout: expected one of LBNHC"],
      [
        { layout: "LBNHC", vllmVersion: "latest" },
        'UNSUPPORTED_LAYOUT vllmVersion: expected "major.minor"',
      ],
    ];
    for (const [options, message] of cases) {
      expect(reason(() => resolveVllmPoolLayout(options))).toContain(message);
    }
  });
});

describe("vllmStandardGeometry: vLLM's compute_layout_strides and create_kv_cache_views", () => {
  // bf16, 4 heads x 8 dims: C = (8 + 8) * 2 = 32 bytes; a page is 4 heads x 16 tokens x 32 = 2048.
  const d = mhaDescriptor({ dtype: "bf16" });
  const base: VllmStandardPoolOptions = {
    layout: "LBNHC",
    numLayers: 3,
    numBlocks: 10,
    blockTable: [],
  };

  it("LBNHC (default): layers outermost, then blocks, then [tokens][heads][C]", () => {
    const g = vllmStandardGeometry(d, base);
    expect(g.shape).toEqual([3, 10, 4, 16, 32]);
    expect(g.strides).toEqual([20480, 2048, 32, 128, 1]);
    expect(g.byteLength).toBe(3 * 10 * 2048);
    expect(g.layerViewShape).toEqual([10, 4, 16, 16]);
    expect(g.layerViewStrides).toEqual([1024, 16, 64, 1]);
  });

  it("BLHNC: blocks outermost, each block the pages of every layer", () => {
    const g = vllmStandardGeometry(d, { ...base, layout: "BLHNC" });
    expect(g.strides).toEqual([2048, 6144, 512, 32, 1]);
  });

  it("padded pages round the page up (L and B outermost), and kernel blocks split a dense page", () => {
    const padded = vllmStandardGeometry(d, { ...base, layout: "BLNHC", pagePaddedBytes: 2560 });
    expect(padded.strides).toEqual([2560, 7680, 32, 128, 1]);
    expect(padded.byteLength).toBe(10 * 3 * 2560);
    const split = vllmStandardGeometry(d, { ...base, layout: "LBHNC", kernelBlockSizeTokens: 4 });
    expect(split.shape).toEqual([3, 40, 4, 4, 32]);
    expect(split.strides).toEqual([20480, 512, 128, 32, 1]);
  });

  it("refuses what vLLM refuses: splitting non-dense blocks, padding a page the heads cut through", () => {
    expect(
      reason(() => vllmStandardGeometry(d, { ...base, layout: "BLNHC", kernelBlockSizeTokens: 8 })),
    ).toContain(
      "kernelBlockSizeTokens: BLNHC does not store blocks as dense pages (block stride 6144 != page 2048)",
    );
    expect(
      reason(() => vllmStandardGeometry(d, { ...base, layout: "LHBNC", pagePaddedBytes: 4096 })),
    ).toContain("pagePaddedBytes: LHBNC puts the head axis outside the page");
    expect(reason(() => vllmStandardGeometry(d, { ...base, pagePaddedBytes: 100 }))).toContain(
      "OUT_OF_RANGE",
    );
    expect(reason(() => vllmStandardGeometry(d, { ...base, kernelBlockSizeTokens: 5 }))).toContain(
      "5 must divide the block size 16",
    );
    expect(
      reason(() =>
        vllmStandardGeometry(d, { ...base, pagePaddedBytes: 2560, kernelBlockSizeTokens: 8 }),
      ),
    ).toContain("padded pages cannot be split");
  });
});

describe("toVllmStandardLayer / fromVllmStandardLayer", () => {
  it("puts K then V of each head and token side by side in C, at the block table's slots", () => {
    const d = mhaDescriptor({ tokenStart: 5, tokenCount: 3 });
    const cache = coordinateCache(d);
    const options = {
      ...{ layout: "LBNHC" as const, numLayers: 3, numBlocks: 4 },
      blockTable: [2],
    };
    const pool = new Uint8Array(vllmStandardGeometry(d, options).byteLength);
    toVllmStandardLayer(cache, { ...options, layer: 1, pool });
    // f32, 4 heads x 8 dims: C = 64 bytes; layer 1, block 2, token 6 (offset 6), head 3.
    const at = 1 * 4 * 16 * 4 * 64 + 2 * 16 * 4 * 64 + 6 * 4 * 64 + 3 * 64;
    const f = new Float32Array(pool.buffer, at, 16);
    const kRow = new Float32Array(
      cache.part(1, "k").buffer,
      cache.part(1, "k").byteOffset + (1 * 4 + 3) * 32,
      8,
    );
    const vRow = new Float32Array(
      cache.part(1, "v").buffer,
      cache.part(1, "v").byteOffset + (1 * 4 + 3) * 32,
      8,
    );
    expect([...f]).toEqual([...kRow, ...vRow]);
    const back = fromVllmStandardLayer(pool, { ...options, descriptor: d, layer: 1 });
    expect(Buffer.compare(back.k as Uint8Array, cache.part(1, "k"))).toBe(0);
    expect(Buffer.compare(back.v as Uint8Array, cache.part(1, "v"))).toBe(0);
  });

  it("mla: one latent row per token, no V", () => {
    const d = mlaDescriptor();
    const cache = coordinateCache(d);
    const options = { layout: "BHLNC" as const, numLayers: 3, numBlocks: 5, blockTable: [4, 0, 3] };
    const pool = new Uint8Array(vllmStandardGeometry(d, options).byteLength);
    toVllmStandardLayer(cache, { ...options, layer: 2, pool });
    const back = fromVllmStandardLayer(pool, { ...options, descriptor: d, layer: 2 });
    expect(Object.keys(back)).toEqual(["latent"]);
    expect(Buffer.compare(back.latent as Uint8Array, cache.part(2, "latent"))).toBe(0);
  });

  it("checks everything before writing: a rejected call leaves the pool unchanged", () => {
    const d = mhaDescriptor();
    const cache = coordinateCache(d);
    const options = { layout: "LBNHC" as const, numLayers: 3, numBlocks: 4, blockTable: [0, 1, 3] };
    const pool = new Uint8Array(vllmStandardGeometry(d, options).byteLength).fill(7);
    const cases: [() => void, string][] = [
      [
        () => toVllmStandardLayer(cache, { ...options, blockTable: [0, 1, 4], layer: 0, pool }),
        "OUT_OF_RANGE",
      ],
      [
        () => toVllmStandardLayer(cache, { ...options, blockTable: [0, 1, 0], layer: 0, pool }),
        "INVALID_OFFSETS",
      ],
      [() => toVllmStandardLayer(cache, { ...options, layer: 3, pool }), "OUT_OF_RANGE layer 3"],
      [
        () => toVllmStandardLayer(cache, { ...options, layer: 0, pool: pool.subarray(1) }),
        "SHAPE_MISMATCH",
      ],
    ];
    for (const [fn, message] of cases) expect(reason(fn)).toContain(message);
    expect(pool.every((b) => b === 7)).toBe(true);
  });
});
