import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  fromLmcacheChunks,
  fromSglangLayer,
  fromVllmPagedLayer,
  fromVllmStandardLayer,
  type KvDescriptor,
  mergeKvHeads,
  partsOf,
  sliceKvHeads,
  toKvLayout,
  toLmcacheChunks,
  toSglangLayer,
  toVllmPagedLayer,
  toVllmStandardLayer,
  VLLM_KV_CACHE_LAYOUTS,
  vllmPoolByteLength,
  vllmStandardGeometry,
} from "../src/index";
import { coordinateCache, mhaDescriptor, mlaDescriptor, randomCache, sameCache } from "./fixtures";

/** Random small descriptors, mha or mla, any dtype and layout, f32 half of the time (coordinates). */
const arbDescriptor = fc
  .record({
    mla: fc.boolean(),
    layers: fc.integer({ min: 1, max: 3 }),
    heads: fc.integer({ min: 1, max: 6 }),
    dim: fc.integer({ min: 1, max: 12 }),
    tokens: fc.integer({ min: 1, max: 70 }),
    start: fc.integer({ min: 0, max: 40 }),
    block: fc.constantFrom(1, 4, 16),
    dtype: fc.constantFrom("f32", "f32", "f16", "bf16", "fp8_e5m2" as const),
    hnd: fc.boolean(),
  })
  .map((r): KvDescriptor => {
    const common = {
      numLayers: r.layers,
      tokenCount: r.tokens,
      tokenStart: r.start,
      blockSizeTokens: r.block,
      dtype: r.dtype,
    };
    return r.mla
      ? mlaDescriptor({ ...common, attention: { kind: "mla", latentDim: r.dim, ropeDim: r.heads } })
      : mhaDescriptor({
          ...common,
          attention: { kind: "mha", numKvHeads: r.heads, headDim: r.dim },
          headRange: { start: 0, count: r.heads },
          layout: r.hnd ? "hnd" : "nhd",
        });
  });
const cacheOf = (d: KvDescriptor, seed: number) =>
  d.dtype === "f32" ? coordinateCache(d) : randomCache(d, seed);
const settings = { numRuns: 60 };

describe("property: every converter round-trips (A -> B -> A is the identity)", () => {
  it("NHD <-> HND", () => {
    fc.assert(
      fc.property(arbDescriptor, fc.nat(), (d, seed) => {
        const cache = cacheOf(d, seed);
        const other = d.attention.kind === "mla" ? "nhd" : d.layout === "nhd" ? "hnd" : "nhd";
        expect(sameCache(toKvLayout(toKvLayout(cache, other), d.layout), cache)).toBe(true);
      }),
      settings,
    );
  });

  it("vLLM paged pools (both orders, both physical layouts) through a shuffled block table", () => {
    fc.assert(
      fc.property(
        arbDescriptor,
        fc.nat(),
        fc.constantFrom("flash_attn", "flashinfer" as const),
        fc.constantFrom("nhd", "hnd" as const),
        (d, seed, order, physicalLayout) => {
          const cache = cacheOf(d, seed);
          const blocks = Math.ceil((d.tokenStart + d.tokenCount) / d.blockSizeTokens);
          const numBlocks = blocks + 3;
          const blockTable = Array.from({ length: blocks }, (_, i) => (i * 5 + seed) % numBlocks);
          if (new Set(blockTable).size !== blocks) return; // not a permutation: skip
          const options = { order, physicalLayout, numBlocks, blockTable };
          for (let layer = 0; layer < d.numLayers; layer++) {
            const pool = new Uint8Array(vllmPoolByteLength(d, options));
            toVllmPagedLayer(cache, { ...options, layer, pool });
            const back = fromVllmPagedLayer(pool, { ...options, descriptor: d });
            for (const part of partsOf(d))
              expect(Buffer.compare(back[part]!, cache.part(layer, part))).toBe(0);
          }
        },
      ),
      settings,
    );
  });

  it("vLLM >= 0.29 allocations (every KVCacheLayout, all layers in one buffer) keep other layers intact", () => {
    fc.assert(
      fc.property(
        arbDescriptor,
        fc.nat(),
        fc.constantFrom(...VLLM_KV_CACHE_LAYOUTS),
        (d, seed, layout) => {
          const cache = cacheOf(d, seed);
          const blocks = Math.ceil((d.tokenStart + d.tokenCount) / d.blockSizeTokens);
          const numBlocks = blocks + 2;
          const blockTable = Array.from({ length: blocks }, (_, i) => (i * 5 + seed) % numBlocks);
          if (new Set(blockTable).size !== blocks) return; // not a permutation: skip
          const options = { layout, numLayers: d.numLayers, numBlocks, blockTable };
          const pool = new Uint8Array(vllmStandardGeometry(d, options).byteLength);
          for (let layer = 0; layer < d.numLayers; layer++)
            toVllmStandardLayer(cache, { ...options, layer, pool });
          for (let layer = 0; layer < d.numLayers; layer++) {
            const back = fromVllmStandardLayer(pool, { ...options, descriptor: d, layer });
            for (const part of partsOf(d).filter((p) => !p.endsWith("_scale")))
              expect(Buffer.compare(back[part]!, cache.part(layer, part))).toBe(0);
          }
        },
      ),
      settings,
    );
  });

  it("SGLang slots and LMCache chunks", () => {
    fc.assert(
      fc.property(arbDescriptor, fc.nat(), fc.integer({ min: 1, max: 40 }), (d, seed, chunk) => {
        const cache = cacheOf(d, seed);
        const slots = Array.from(
          { length: d.tokenCount },
          (_, i) => 1 + ((i * 7 + seed) % (d.tokenCount * 2)),
        );
        if (new Set(slots).size !== slots.length) return;
        const heads = d.attention.kind === "mla" ? 1 : d.headRange.count;
        const dim =
          d.attention.kind === "mla"
            ? d.attention.latentDim + d.attention.ropeDim
            : d.attention.headDim;
        const slotBytes = heads * dim * (d.dtype === "f32" ? 4 : d.dtype === "fp8_e5m2" ? 1 : 2);
        const buffers = {
          kBuffer: new Uint8Array((2 * d.tokenCount + 1) * slotBytes),
          vBuffer:
            d.attention.kind === "mla"
              ? undefined
              : new Uint8Array((2 * d.tokenCount + 1) * slotBytes),
        };
        toSglangLayer(cache, { layer: 0, buffers, slots });
        const back = fromSglangLayer(buffers, { descriptor: d, slots });
        for (const part of partsOf(d))
          expect(Buffer.compare(back[part]!, cache.part(0, part))).toBe(0);
        const aligned = { ...d, tokenStart: d.tokenStart - (d.tokenStart % chunk) };
        const c2 = cacheOf(aligned, seed);
        expect(
          sameCache(
            fromLmcacheChunks(toLmcacheChunks(c2, { chunkSizeTokens: chunk }), aligned, {
              chunkSizeTokens: chunk,
            }),
            c2,
          ),
        ).toBe(true);
      }),
      settings,
    );
  });

  it("head-range slicing and merging for any split", () => {
    fc.assert(
      fc.property(
        arbDescriptor,
        fc.nat(),
        fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 6 }),
        (d, seed, sizes) => {
          if (d.attention.kind === "mla") return;
          const cache = cacheOf(d, seed);
          const pieces = [];
          let start = 0;
          for (const size of sizes) {
            const count = Math.min(size, d.headRange.count - start);
            if (count <= 0) break;
            pieces.push(sliceKvHeads(cache, { start, count }));
            start += count;
          }
          if (start < d.headRange.count)
            pieces.push(sliceKvHeads(cache, { start, count: d.headRange.count - start }));
          expect(sameCache(mergeKvHeads(pieces.reverse()), cache)).toBe(true);
        },
      ),
      settings,
    );
  });
});
