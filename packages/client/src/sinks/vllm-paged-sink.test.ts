import { Code, Reason } from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import {
  dtypeByteSize,
  fromVllmPagedLayer,
  fromVllmStandardLayer,
  type KvCache,
  type KvDescriptor,
  type KvLayout,
  VLLM_KV_CACHE_LAYOUTS,
  type VllmPagedOptions,
  type VllmPagedOrder,
  vllmStandardGeometry,
} from "@opal/kv";
import { expectOpalError } from "@opal/testing";
import { describe, expect, it } from "vitest";
import {
  coordinateCache,
  mhaDescriptor,
  mlaDescriptor,
  randomCache,
} from "../../../kv/test/fixtures";
import { createVllmPagedSink, type VllmPagedSinkOptions } from "./vllm-paged-sink";

const stats = {} as PrefillStats;
const SENTINEL = 0xee;
const blockTable = Int32Array.of(9, 2, 7, 0, 5);

function poolOptions(d: KvDescriptor, patch: Partial<VllmPagedSinkOptions> = {}) {
  const mla = d.attention.kind === "mla";
  const base = {
    vllmVersion: "0.28",
    blockTable,
    order: "flash_attn" as VllmPagedOrder,
    layout: "nhd" as const,
    blockSizeTokens: 16,
    numBlocks: 10,
    dtype: d.dtype,
    numKvHeads: mla ? 1 : d.headRange.count,
    headSize:
      d.attention.kind === "mla"
        ? d.attention.latentDim + d.attention.ropeDim
        : d.attention.headDim,
    attention: d.attention.kind,
    ...patch,
  };
  const paged: VllmPagedOptions = {
    order: base.order,
    physicalLayout: base.layout as KvLayout,
    numBlocks: base.numBlocks,
    blockTable: base.blockTable,
    blockSizeTokens: base.blockSizeTokens,
  };
  const poolBytes =
    (base.attention === "mla" ? 1 : 2) *
    base.numBlocks *
    base.blockSizeTokens *
    base.numKvHeads *
    base.headSize *
    dtypeByteSize(base.dtype);
  const pools =
    patch.pools ??
    Array.from({ length: d.numLayers }, () => new Uint8Array(poolBytes).fill(SENTINEL));
  return { options: { ...base, pools } satisfies VllmPagedSinkOptions, paged };
}

async function feed(sink: ReturnType<typeof createVllmPagedSink>, cache: KvCache, layers: number) {
  await sink.open(cache.descriptor);
  for (let layer = 0; layer < layers; layer++) await sink.writeLayer(cache.layer(layer));
}

describe("createVllmPagedSink", () => {
  const caches: [string, KvDescriptor][] = [
    ["mha nhd heads 1-3", mhaDescriptor({ tokenStart: 5, headRange: { start: 1, count: 3 } })],
    ["mha hnd", mhaDescriptor({ layout: "hnd", tokenStart: 16 })],
    ["mla", mlaDescriptor({ tokenStart: 3 })],
  ];
  for (const [name, d] of caches) {
    for (const order of ["flash_attn", "flashinfer"] as const) {
      for (const layout of ["nhd", "hnd"] as const) {
        if (d.attention.kind === "mla" && (order === "flashinfer" || layout === "hnd")) continue;
        it(`${name} -> ${order} ${layout}: every layer reads back through the block table`, async () => {
          const cache = coordinateCache(d);
          const { options, paged } = poolOptions(d, { order, layout });
          const sink = createVllmPagedSink(options);
          await feed(sink, cache, d.numLayers);
          const receipt = await sink.commit(stats);
          const first = Math.floor(d.tokenStart / 16);
          const last = Math.floor((d.tokenStart + d.tokenCount - 1) / 16);
          expect(receipt).toEqual({ blocksWritten: last - first + 1, tokens: 37, scales: [] });
          for (let layer = 0; layer < d.numLayers; layer++) {
            const back = fromVllmPagedLayer(options.pools[layer] as Uint8Array, {
              ...paged,
              descriptor: d,
            });
            for (const [part, bytes] of Object.entries(back)) {
              expect(Buffer.compare(bytes, cache.part(layer, part as "k"))).toBe(0);
            }
          }
          // Blocks outside the table keep the sentinel (block 1 is never in the table).
          const pool = options.pools[0] as Uint8Array;
          const perBlock = pool.byteLength / 10 / (d.attention.kind === "mla" ? 1 : 2);
          if (order === "flashinfer") {
            expect(pool.subarray(2 * perBlock, 4 * perBlock).every((b) => b === SENTINEL)).toBe(
              true,
            );
          } else {
            expect(pool.subarray(perBlock, 2 * perBlock).every((b) => b === SENTINEL)).toBe(true);
          }
        });
      }
    }
  }

  it("returns per-layer scale copies for a quantised cache (vLLM keeps scales outside the pool)", async () => {
    const cache = randomCache(mhaDescriptor({ dtype: "fp8_e4m3fn", scaleScheme: "per_tensor" }));
    const { options } = poolOptions(cache.descriptor);
    const sink = createVllmPagedSink(options);
    await feed(sink, cache, 3);
    const { scales } = await sink.commit(stats);
    expect(scales.length).toBe(3);
    expect(Buffer.compare(scales[2]?.v_scale as Uint8Array, cache.part(2, "v_scale"))).toBe(0);
  });

  it("abort zeroes exactly the slots written (a decoder prefix in the same block survives)", async () => {
    // Tokens 5..41: block 9 holds the decoder's tokens 0..4 (kept) and ours from offset 5.
    const d = mhaDescriptor({ tokenStart: 5 });
    const cache = coordinateCache(d);
    const { options, paged } = poolOptions(d, { order: "flashinfer", layout: "hnd" });
    const sink = createVllmPagedSink(options);
    await feed(sink, cache, 2);
    await sink.abort(new Error("stream failed"));
    const zero = new Uint8Array(37 * 4 * 8 * 4);
    for (let layer = 0; layer < 2; layer++) {
      const back = fromVllmPagedLayer(options.pools[layer] as Uint8Array, {
        ...paged,
        descriptor: d,
      });
      expect(Buffer.compare(back.k as Uint8Array, zero)).toBe(0);
      expect(Buffer.compare(back.v as Uint8Array, zero)).toBe(0);
    }
    // Everything else is as before: the decoder prefix (tokens 0..4) and layer 2 entirely.
    const prefix = fromVllmPagedLayer(options.pools[0] as Uint8Array, {
      ...paged,
      descriptor: { ...d, tokenStart: 0, tokenCount: 5 },
    });
    expect((prefix.k as Uint8Array).every((b) => b === SENTINEL)).toBe(true);
    expect((options.pools[2] as Uint8Array).every((b) => b === SENTINEL)).toBe(true);
    const zeroed = (options.pools[0] as Uint8Array).reduce((n, b) => n + (b === 0 ? 1 : 0), 0);
    expect(zeroed).toBe(2 * zero.byteLength);
    await expectOpalError(Promise.resolve(sink.commit(stats)), Code.CANCELLED);
  });

  it("rejects a dtype, head, head size, block size or layer mismatch at open, naming both sides", async () => {
    const d = mhaDescriptor({ headRange: { start: 0, count: 4 } });
    const cases: [Partial<VllmPagedSinkOptions>, string][] = [
      [{ dtype: "bf16" }, "dtype: the pools hold bf16, the cache is f32"],
      [{ numKvHeads: 2 }, "num_kv_heads: the pools hold 2 heads, the cache carries 4 (heads 0..3)"],
      [{ headSize: 128 }, "head_size: the pools hold 128, the cache has 8"],
      [
        { blockSizeTokens: 32 },
        "block_size: the pools use 32 tokens per block, the cache was prepared for 16",
      ],
      [{ attention: "mla", numKvHeads: 1 }, "attention: the pools are mla, the cache is mha"],
      [
        { blockTable: [3, 4] },
        "blockTable: 2 entries cover tokens [0, 32), the cache holds tokens [0, 37)",
      ],
    ];
    for (const [patch, message] of cases) {
      const { options } = poolOptions(d, patch);
      const sink = createVllmPagedSink(options);
      const error = await expectOpalError(
        Promise.resolve(sink.open(d)),
        Code.FAILED_PRECONDITION,
        Reason.DESCRIPTOR_MISMATCH,
      );
      expect(error.message).toBe(`[failed_precondition] ${message}`);
      expect(options.pools.every((pool) => pool.every((b) => b === SENTINEL))).toBe(true);
    }
    const { options } = poolOptions(d);
    const error = await expectOpalError(
      Promise.resolve(createVllmPagedSink({ ...options, pools: options.pools.slice(1) }).open(d)),
      Code.FAILED_PRECONDITION,
      Reason.DESCRIPTOR_MISMATCH,
    );
    expect(error.message).toContain("layers: 2 pools were given, the cache has 3 layers");
  });

  it("rejects bad options: a pool of the wrong size, a block outside the pool, a block used twice", async () => {
    const d = mhaDescriptor();
    const { options } = poolOptions(d);
    expect(() =>
      createVllmPagedSink({ ...options, pools: [new Uint8Array(10), ...options.pools.slice(1)] }),
    ).toThrow(
      "[invalid_argument] pools[0]: expected 40960 bytes (2 x 10 blocks x 16 tokens x 4 heads x 8 x f32), got 10 bytes",
    );
    for (const [table, message] of [
      [[1, 2, 10], "blockTable[2]: expected a block id in [0, 10), got 10"],
      [[1, 2, 1], "blockTable[2]: expected a block not used by another entry, got 1"],
    ] as const) {
      const error = await expectOpalError(
        Promise.resolve(createVllmPagedSink({ ...options, blockTable: table }).open(d)),
        Code.INVALID_ARGUMENT,
        Reason.INVALID_FIELD,
      );
      expect(error.message).toBe(`[invalid_argument] ${message}`);
      expect(error.fieldViolations[0]?.field).toBe("blockTable[2]");
    }
  });
});

describe("createVllmPagedSink, vLLM >= 0.29 allocations", () => {
  const d = mhaDescriptor({ dtype: "bf16", tokenStart: 5 });
  const std = {
    numLayers: 3,
    numBlocks: 10,
    blockTable,
    blockSizeTokens: 16,
    dtype: "bf16" as const,
    numKvHeads: 4,
    headSize: 8,
  };

  for (const layout of VLLM_KV_CACHE_LAYOUTS) {
    it(`${layout}: every layer reads back; bytes outside the request's slots are untouched`, async () => {
      const cache = randomCache(d);
      const bytes = vllmStandardGeometry(d, { ...std, layout }).byteLength;
      const allocation = new Uint8Array(bytes).fill(SENTINEL);
      const sink = createVllmPagedSink({ ...std, layout, allocation });
      await feed(sink, cache, 3);
      expect(await sink.commit(stats)).toEqual({ blocksWritten: 3, tokens: 37, scales: [] });
      for (let layer = 0; layer < 3; layer++) {
        const back = fromVllmStandardLayer(allocation, { ...std, layout, descriptor: d, layer });
        expect(Buffer.compare(back.k as Uint8Array, cache.part(layer, "k"))).toBe(0);
        expect(Buffer.compare(back.v as Uint8Array, cache.part(layer, "v"))).toBe(0);
      }
      const written = 3 * 37 * 4 * (8 + 8) * 2;
      expect(allocation.reduce((n, b) => n + (b === SENTINEL ? 1 : 0), 0)).toBeGreaterThanOrEqual(
        bytes - written,
      );
    });
  }

  it("abort zeroes exactly the slots written (the decoder's prefix in block 9 survives)", async () => {
    const layout = "BLNHC";
    const allocation = new Uint8Array(vllmStandardGeometry(d, { ...std, layout }).byteLength).fill(
      SENTINEL,
    );
    const sink = createVllmPagedSink({ ...std, layout, allocation });
    await feed(sink, randomCache(d), 2);
    await sink.abort(new Error("stream failed"));
    for (let layer = 0; layer < 2; layer++) {
      const back = fromVllmStandardLayer(allocation, { ...std, layout, descriptor: d, layer });
      expect((back.k as Uint8Array).every((b) => b === 0)).toBe(true);
      expect((back.v as Uint8Array).every((b) => b === 0)).toBe(true);
    }
    const prefix = { ...d, tokenStart: 0, tokenCount: 5 };
    const kept = fromVllmStandardLayer(allocation, {
      ...std,
      layout,
      descriptor: prefix,
      layer: 0,
    });
    expect((kept.k as Uint8Array).every((b) => b === SENTINEL)).toBe(true);
    const zeroed = allocation.reduce((n, b) => n + (b === 0 ? 1 : 0), 0);
    expect(zeroed).toBe(2 * 37 * 4 * 16 * 2);
  });

  it("refuses a layout it would have to guess, a contradiction, or memory of the other family", () => {
    const allocation = new Uint8Array(
      vllmStandardGeometry(d, { ...std, layout: "LBNHC" }).byteLength,
    );
    const cases: [Partial<VllmPagedSinkOptions>, string][] = [
      [{}, "layout: required"],
      [{ layout: "NHD" }, 'vllmVersion: required with layout "NHD"'],
      [{ layout: "LBNHC", vllmVersion: "0.28" }, "layout: LBNHC is a vLLM >= 0.29 KVCacheLayout"],
      [{ vllmVersion: "0.29" }, "layout: required with vllmVersion 0.29"],
      [{ layout: "LBNHC", pools: [allocation] }, "pools: expected no per-layer pools for LBNHC"],
      [{ layout: "LBNHC", allocation: allocation.subarray(2) }, "allocation: expected 61440 bytes"],
      [
        { layout: "flash_attn_nhd" },
        "allocation: expected no allocation for a vLLM <= 0.28 layout",
      ],
      [
        {
          layout: "LBNHC",
          layerTensor: { shape: [2, 10, 16, 4, 8], stride: [5120, 512, 32, 8, 1] },
        },
        "layerTensor: expected shape [10,4,16,16] stride [1024,16,64,1] (LBNHC, vLLM >= 0.29)",
      ],
      [
        {
          layout: "flash_attn_nhd",
          allocation: undefined,
          pools: [allocation, allocation, allocation].map((a) => a.subarray(0, 20480)),
          layerTensor: { shape: [10, 4, 16, 16], stride: [1024, 16, 64, 1] },
        },
        "layerTensor: expected shape [2,10,16,4,8] stride [5120,512,32,8,1] (flash_attn nhd, vLLM <= 0.28)",
      ],
    ];
    for (const [patch, message] of cases) {
      expect(() => createVllmPagedSink({ ...std, allocation, ...patch })).toThrow(message);
    }
    const ok = { shape: [10, 4, 16, 16], stride: [1024, 16, 64, 1] };
    expect(() =>
      createVllmPagedSink({
        ...std,
        allocation,
        layout: "NHD",
        vllmVersion: "0.29",
        layerTensor: ok,
      }),
    ).not.toThrow();
  });

  it("refuses per-token scales at open: vLLM's fp8 caches have static per-layer k_scale/v_scale", async () => {
    const fp8 = mhaDescriptor({ dtype: "fp8_e4m3fn", scaleScheme: "per_token" });
    const geometry = { ...std, dtype: "fp8_e4m3fn" as const, layout: "LBNHC" as const };
    const allocation = new Uint8Array(vllmStandardGeometry(fp8, geometry).byteLength);
    const sink = createVllmPagedSink({ ...geometry, allocation });
    const error = await expectOpalError(
      Promise.resolve(sink.open(fp8)),
      Code.FAILED_PRECONDITION,
      Reason.DESCRIPTOR_MISMATCH,
    );
    expect(error.message).toContain(
      "scales: vLLM's fp8 KV caches have static per-layer k_scale/v_scale",
    );
    expect(allocation.every((b) => b === 0)).toBe(true);
  });
});
