import { describe, expect, it } from "vitest";
import {
  coordinateCache,
  coordinateValue,
  mhaDescriptor,
  mlaDescriptor,
  randomCache,
  sameCache,
} from "../test/fixtures";
import {
  createKvCache,
  fromKvParts,
  fromLmcacheChunks,
  fromSglangLayer,
  fromVllmPagedLayer,
  headRangeOf,
  type KvCache,
  type KvDescriptor,
  KvFormatError,
  mergeKvHeads,
  partsOf,
  sliceKvHeads,
  toFloat32View,
  toKvLayout,
  toLmcacheChunks,
  toSglangLayer,
  toVllmPagedLayer,
  type VllmPagedOptions,
  vllmPoolByteLength,
} from "./index";

const f32 = (bytes: Uint8Array) => toFloat32View(bytes);

const caches: [string, KvDescriptor][] = [
  ["mha nhd", mhaDescriptor({ tokenStart: 5, headRange: { start: 1, count: 3 } })],
  ["mha hnd", mhaDescriptor({ layout: "hnd", tokenStart: 16 })],
  ["mla", mlaDescriptor({ tokenStart: 3 })],
];

describe("NHD <-> HND", () => {
  for (const [name, d] of caches) {
    it(`${name}: A -> B -> A is the identity and B holds the right coordinates`, () => {
      const cache = coordinateCache(d);
      const other = d.attention.kind === "mla" ? "nhd" : d.layout === "nhd" ? "hnd" : "nhd";
      const b = toKvLayout(cache, other);
      expect(sameCache(b, coordinateCache({ ...d, layout: other }))).toBe(true);
      expect(sameCache(toKvLayout(b, d.layout), cache)).toBe(true);
      const random = randomCache({ ...d, dtype: "bf16" });
      expect(sameCache(toKvLayout(toKvLayout(random, other), d.layout), random)).toBe(true);
    });
  }
});

describe("vLLM paged", () => {
  const blockTable = Int32Array.of(9, 2, 7, 0, 5);
  for (const [name, d] of caches) {
    for (const order of ["flash_attn", "flashinfer"] as const) {
      for (const physicalLayout of ["nhd", "hnd"] as const) {
        if (d.attention.kind === "mla" && (order === "flashinfer" || physicalLayout === "hnd"))
          continue;
        it(`${name} -> ${order} ${physicalLayout} pool -> back is the identity, slots hold their tokens`, () => {
          const cache = coordinateCache(d);
          const options: VllmPagedOptions = { order, physicalLayout, numBlocks: 10, blockTable };
          const pool = new Uint8Array(vllmPoolByteLength(d, options)).fill(0xee);
          for (let layer = 0; layer < d.numLayers; layer++)
            toVllmPagedLayer(cache, { ...options, layer, pool });
          // Last layer is in the pool: check one element by the vLLM addressing formula.
          const heads = d.attention.kind === "mla" ? 1 : d.headRange.count;
          const dim = d.attention.kind === "mla" ? 20 : 8;
          const p = d.tokenStart + 17;
          const block = blockTable[Math.floor(p / 16)] as number;
          const off = p % 16;
          const h = heads - 1;
          const kv = d.attention.kind === "mla" ? 0 : 1;
          const plane = order === "flash_attn" ? kv * 10 + block : block * 2 + kv;
          const row =
            physicalLayout === "nhd"
              ? (plane * 16 + off) * heads + h
              : (plane * heads + h) * 16 + off;
          expect(f32(pool)[row * dim + 3]).toBe(
            coordinateValue(d.numLayers - 1, kv, p, d.headRange.start + h, 3),
          );
          const back = fromVllmPagedLayer(pool, { ...options, descriptor: d });
          for (const part of partsOf(d)) {
            expect(Buffer.compare(back[part]!, cache.part(d.numLayers - 1, part))).toBe(0);
          }
          // Slots outside the request stay untouched: write into a differently prefilled pool.
          const other = new Uint8Array(pool.byteLength).fill(0x11);
          toVllmPagedLayer(cache, { ...options, layer: d.numLayers - 1, pool: other });
          let untouched = 0;
          for (let i = 0; i < pool.byteLength; i++) if (pool[i] !== other[i]) untouched++;
          expect(untouched).toBe(pool.byteLength - (kv + 1) * d.tokenCount * heads * dim * 4);
        });
      }
    }
  }

  it("rejects a block table that is too short or points outside the pool", () => {
    const d = mhaDescriptor();
    const cache = randomCache(d);
    const options = { order: "flash_attn" as const, numBlocks: 3, blockTable: [0, 1] };
    const pool = new Uint8Array(vllmPoolByteLength(d, options));
    expect(() => toVllmPagedLayer(cache, { ...options, layer: 0, pool })).toThrow(
      /block table entry 2 is undefined/,
    );
    expect(() =>
      toVllmPagedLayer(cache, { ...options, blockTable: [0, 1, 3], layer: 0, pool }),
    ).toThrow(/\[0, 3\)/);
    expect(() =>
      toVllmPagedLayer(cache, {
        ...options,
        blockTable: [0, 1, 2],
        layer: 0,
        pool: pool.subarray(1),
      }),
    ).toThrow(/pool is/);
  });

  it("checks the whole block table first: a rejected write leaves the pool unchanged", () => {
    const d = mhaDescriptor({ numLayers: 1, tokenCount: 20 }); // blocks 0 and 1, the last partial
    const cache = randomCache(d);
    const options = { order: "flash_attn" as const, numBlocks: 4 };
    const pool = new Uint8Array(vllmPoolByteLength(d, { ...options, blockTable: [] })).fill(0xee);
    for (const blockTable of [[3, 99], [3], [2, 2]]) {
      expect(() => toVllmPagedLayer(cache, { ...options, blockTable, layer: 0, pool })).toThrow(
        KvFormatError,
      );
      expect(pool.every((b) => b === 0xee)).toBe(true);
    }
  });

  it("rejects two logical blocks on one physical block, and unknown orders and layouts", () => {
    const d = mhaDescriptor({ numLayers: 1, tokenCount: 20 });
    const options = { order: "flash_attn" as const, numBlocks: 4, blockTable: [1, 1] };
    const pool = new Uint8Array(vllmPoolByteLength(d, options));
    const reason = (fn: () => unknown) => {
      try {
        fn();
      } catch (error) {
        return (error as KvFormatError).reason;
      }
      return "no error";
    };
    expect(reason(() => fromVllmPagedLayer(pool, { ...options, descriptor: d }))).toBe(
      "INVALID_OFFSETS",
    );
    // A table that is out of order but injective is fine; entries past the tokens are not read.
    expect(
      reason(() => fromVllmPagedLayer(pool, { ...options, blockTable: [3, 0, 3], descriptor: d })),
    ).toBe("no error");
    expect(reason(() => vllmPoolByteLength(d, { ...options, order: "flash" as never }))).toBe(
      "UNSUPPORTED_LAYOUT",
    );
    expect(
      reason(() => vllmPoolByteLength(d, { ...options, physicalLayout: "HND" as never })),
    ).toBe("UNSUPPORTED_LAYOUT");
  });
});

describe("SGLang per-layer buffers", () => {
  for (const [name, d] of caches) {
    it(`${name}: cache -> slots -> cache is the identity`, () => {
      const cache = coordinateCache(d);
      const slots = Array.from({ length: d.tokenCount }, (_, i) => 1 + ((i * 7) % 50));
      const slotBytes = (d.attention.kind === "mla" ? 20 : d.headRange.count * 8) * 4;
      const buffers = {
        kBuffer: new Uint8Array(51 * slotBytes),
        vBuffer: d.attention.kind === "mla" ? undefined : new Uint8Array(51 * slotBytes),
      };
      toSglangLayer(cache, { layer: 1, buffers, slots });
      const h = d.attention.kind === "mla" ? 1 : d.headRange.count;
      const dim = slotBytes / 4 / h;
      expect(f32(buffers.kBuffer)[slots[4]! * h * dim + (h - 1) * dim + 2]).toBe(
        coordinateValue(1, 0, d.tokenStart + 4, d.headRange.start + h - 1, 2),
      );
      const back = fromSglangLayer(buffers, { descriptor: d, slots });
      for (const part of partsOf(d))
        expect(Buffer.compare(back[part]!, cache.part(1, part))).toBe(0);
    });
  }
});

describe("SGLang slot checks", () => {
  it("rejects two tokens on one slot before writing anything", () => {
    const d = mhaDescriptor({ numLayers: 1, tokenCount: 3 });
    const slotBytes = 4 * 8 * 4;
    const buffers = {
      kBuffer: new Uint8Array(8 * slotBytes).fill(0xee),
      vBuffer: new Uint8Array(8 * slotBytes).fill(0xee),
    };
    expect(() => toSglangLayer(randomCache(d), { layer: 0, buffers, slots: [5, 2, 5] })).toThrow(
      /tokens 0 and 2 both use slot 5/,
    );
    expect(buffers.kBuffer.every((b) => b === 0xee)).toBe(true);
  });
});

describe("LMCache chunks", () => {
  for (const [name, base] of caches) {
    for (const memoryFormat of ["kv_2ltd", "kv_shape"] as const) {
      it(`${name}, ${memoryFormat}: cache -> 256-token chunks -> cache is the identity`, () => {
        const d = { ...base, tokenStart: 256, tokenCount: 300 };
        const cache = coordinateCache(d);
        const chunks = toLmcacheChunks(cache, { memoryFormat });
        expect(chunks.length).toBe(2);
        const h = d.attention.kind === "mla" ? 1 : d.headRange.count;
        const dim = d.attention.kind === "mla" ? 20 : 8;
        const kvs = d.attention.kind === "mla" ? 1 : 2;
        // Chunk 1 holds tokens 256..299 of the cache (44 tokens). Element (layer 2, last of K/V,
        // token 10, last head, dim 1): kv_2ltd is [kv, layers, 44, heads * dim], kv_shape
        // (layers, kv, 44, heads, dim).
        const slice = memoryFormat === "kv_2ltd" ? (kvs - 1) * d.numLayers + 2 : 2 * kvs + kvs - 1;
        const at = (((slice * 44 + 10) * h + (h - 1)) * dim + 1) | 0;
        expect(f32(chunks[1]!)[at]).toBe(
          coordinateValue(2, kvs - 1, 256 + 256 + 10, d.headRange.start + h - 1, 1),
        );
        expect(sameCache(fromLmcacheChunks(chunks, d, { memoryFormat }), cache)).toBe(true);
      });
    }
  }

  it("defaults to LMCache v1's KV_2LTD, the same bytes as kv_shape for mla", () => {
    for (const [name, base] of caches) {
      const cache = coordinateCache({ ...base, tokenStart: 0, tokenCount: 40 });
      const [v1] = toLmcacheChunks(cache);
      expect(v1, name).toEqual(toLmcacheChunks(cache, { memoryFormat: "kv_2ltd" })[0]);
      const same = base.attention.kind === "mla";
      expect(
        Buffer.from(v1!).equals(toLmcacheChunks(cache, { memoryFormat: "kv_shape" })[0]!),
        name,
      ).toBe(same);
    }
  });

  it("rejects caches with scales, unaligned starts and unknown formats", () => {
    expect(() =>
      toLmcacheChunks(randomCache(mhaDescriptor()), {
        memoryFormat: "KV_T2D" as unknown as "kv_2ltd",
      }),
    ).toThrow('memoryFormat "KV_T2D", expected "kv_2ltd" or "kv_shape"');
    expect(() => toLmcacheChunks(randomCache(mhaDescriptor({ tokenStart: 3 })))).toThrow(
      /multiple/,
    );
    expect(() =>
      toLmcacheChunks(randomCache(mhaDescriptor({ dtype: "int8", scaleScheme: "per_head" }))),
    ).toThrow(/scales/);
  });
});

describe("tensor-parallel head ranges", () => {
  it("assigns heads like vLLM for TP below and above the head count", () => {
    expect([0, 1, 2, 3].map((rank) => headRangeOf({ numKvHeads: 8, tpSize: 4, rank }))).toEqual([
      { start: 0, count: 2 },
      { start: 2, count: 2 },
      { start: 4, count: 2 },
      { start: 6, count: 2 },
    ]);
    expect(
      [0, 1, 2, 3].map((rank) => headRangeOf({ numKvHeads: 2, tpSize: 4, rank }).start),
    ).toEqual([0, 0, 1, 1]);
    expect(() => headRangeOf({ numKvHeads: 6, tpSize: 4, rank: 0 })).toThrow(/divide/);
  });

  for (const layout of ["nhd", "hnd"] as const) {
    for (const dtype of ["f32", "fp8_e4m3fn"] as const) {
      it(`${layout} ${dtype}: prefill TP1 -> decode TP4 slices, TP4 -> TP2 merges, back to the original`, () => {
        const d = mhaDescriptor({
          layout,
          dtype,
          scaleScheme: dtype === "f32" ? "none" : "per_head",
          attention: { kind: "mha", numKvHeads: 8, headDim: 8 },
          headRange: { start: 0, count: 8 },
        });
        const cache = dtype === "f32" ? coordinateCache(d) : randomCache(d);
        const quarters = [0, 1, 2, 3].map((rank) =>
          sliceKvHeads(cache, headRangeOf({ numKvHeads: 8, tpSize: 4, rank })),
        );
        if (dtype === "f32")
          expect(
            sameCache(quarters[2]!, coordinateCache({ ...d, headRange: { start: 4, count: 2 } })),
          ).toBe(true);
        const halves = [
          mergeKvHeads([quarters[1]!, quarters[0]!]),
          mergeKvHeads(quarters.slice(2)),
        ];
        expect(halves[1]!.descriptor.headRange).toEqual({ start: 4, count: 4 });
        expect(sameCache(mergeKvHeads(halves), cache)).toBe(true);
        expect(() => mergeKvHeads([quarters[0]!, quarters[2]!])).toThrow(/gap or overlap/);
        expect(() => sliceKvHeads(quarters[0]!, { start: 1, count: 2 })).toThrow(/not inside/);
      });
    }
  }

  it("merges caches whose descriptors are equal but were built with another key order", () => {
    const d = mhaDescriptor({ numLayers: 1, tokenCount: 2 });
    const [a, b] = [0, 2].map((start) => sliceKvHeads(coordinateCache(d), { start, count: 2 })) as [
      KvCache,
      KvCache,
    ];
    // e.g. one half decoded from .okv (canonical key order), the other built by hand.
    const reverse = <T extends object>(o: T): T =>
      Object.fromEntries(Object.entries(o).reverse()) as T;
    const e = b.descriptor;
    const reordered = reverse({
      ...e,
      attention: reverse(e.attention),
      numerics: reverse(e.numerics),
    });
    const merged = mergeKvHeads([a, fromKvParts(reordered, [b.layer(0).parts])]);
    expect(sameCache(merged, coordinateCache(d))).toBe(true);
  });

  it("keeps mla caches whole", () => {
    const cache: KvCache = randomCache(mlaDescriptor());
    expect(sameCache(sliceKvHeads(cache, { start: 0, count: 1 }), cache)).toBe(true);
    expect(sameCache(mergeKvHeads([cache]), cache)).toBe(true);
    expect(
      sameCache(
        fromKvParts(
          cache.descriptor,
          [0, 1, 2].map((l) => cache.layer(l).parts),
        ),
        cache,
      ),
    ).toBe(true);
    expect(() => createKvCache({ ...cache.descriptor, headRange: { start: 0, count: 2 } })).toThrow(
      /mla/,
    );
  });
});
