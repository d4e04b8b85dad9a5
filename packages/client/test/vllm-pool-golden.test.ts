/**
 * Golden checks of OPAL's vLLM paged pools against vLLM's own steps, not against OPAL's reader:
 * packages/kv/test/vllm-peer/vllm_pool_peer.py (torch 1.13, written from vLLM's source; the file
 * cites each rule's file and commit: vllm/v1/kv_cache_layout.py @ e78684ecbf33f50e037f78beb0838aa2eac7490d,
 * the standardized kv_cache_interface.py, flash_attn.py @ 5704f34f361c6c59a9c092c4e1e96730cc6dc14d,
 * flashinfer.py @ 5314c90d9f16e7c14523f496b0b8f883693951d4) allocates each pool as vLLM does, reads
 * what OPAL's sink wrote through vLLM's tensor views and indexing, and writes the reference K and V
 * through the same views for OPAL to read. Every layout, dtype (bf16, f16, fp8 as uint8) and model
 * shape (GQA, MLA) runs in one Python process.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { PrefillStats } from "@opal/driver";
import {
  createKvCache,
  fromVllmPagedLayer,
  fromVllmStandardLayer,
  type KvCache,
  type KvDescriptor,
  type KvDtype,
  partsOf,
  resolveVllmPoolLayout,
  VLLM_KV_CACHE_LAYOUTS,
  VLLM_LEGACY_LAYOUTS,
  vllmStandardGeometry,
} from "@opal/kv";
import { createSyntheticKv, type SyntheticModelShape } from "@opal/reference";
import { describe, expect, it } from "vitest";
import { PYTHON, pythonUnavailable } from "../../kv/test/python";
import { createVllmPagedSink, type VllmPagedSinkOptions } from "../src/sinks/vllm-paged-sink";

const PEER = fileURLToPath(new URL("../../kv/test/vllm-peer/vllm_pool_peer.py", import.meta.url));
const skip = pythonUnavailable(["torch"]);
const stats = {} as PrefillStats;

const SHAPES: SyntheticModelShape[] = [
  { name: "golden-gqa", numLayers: 3, attention: { kind: "mha", numKvHeads: 2, headDim: 16 } },
  { name: "golden-mla", numLayers: 3, attention: { kind: "mla", latentDim: 32, ropeDim: 8 } },
];
const DTYPES: Record<string, string> = { bf16: "bfloat16", f16: "float16", fp8_e4m3fn: "fp8" };
const NUM_BLOCKS = 6;
const BLOCK = 16;
const LAYER = 1;
const blockTable = [4, 1, 5];

interface Variant {
  readonly name: string;
  readonly options: Partial<VllmPagedSinkOptions>;
}

/** Every layout of both families, with padded pages and kernel block splits where vLLM has them. */
function variants(mla: boolean, pageBytes: number): Variant[] {
  const out: Variant[] = VLLM_KV_CACHE_LAYOUTS.map((layout) => ({
    name: layout,
    options: { layout },
  }));
  out.push({ name: "NHD@0.29", options: { layout: "NHD", vllmVersion: "0.29" } });
  out.push({ name: "HND@0.29", options: { layout: "HND", vllmVersion: "0.29.1" } });
  out.push({
    name: "LBNHC padded",
    options: { layout: "LBNHC", pagePaddedBytes: pageBytes + 256 },
  });
  out.push({ name: "BLHNC padded", options: { layout: "BLHNC", pagePaddedBytes: pageBytes + 64 } });
  out.push({ name: "LBNHC kernel 8", options: { layout: "LBNHC", kernelBlockSizeTokens: 8 } });
  out.push({ name: "LBHNC kernel 4", options: { layout: "LBHNC", kernelBlockSizeTokens: 4 } });
  if (mla) {
    out.push({ name: "legacy mla", options: { vllmVersion: "0.28" } });
  } else {
    for (const layout of VLLM_LEGACY_LAYOUTS) out.push({ name: layout, options: { layout } });
    out.push({
      name: "0.28 flashinfer hnd",
      options: { vllmVersion: "0.28", order: "flashinfer", layout: "hnd" },
    });
  }
  return out;
}

function referenceCache(shape: SyntheticModelShape, dtype: KvDtype): KvCache {
  const kv = createSyntheticKv(shape);
  const mla = shape.attention.kind === "mla";
  const d: KvDescriptor = {
    modelFingerprint: kv.fingerprint,
    numLayers: shape.numLayers,
    attention: shape.attention,
    headRange: {
      start: 0,
      count: mla ? 1 : (shape.attention as { numKvHeads: number }).numKvHeads,
    },
    dtype,
    scaleScheme: "none",
    layout: "nhd",
    tokenStart: 3,
    tokenCount: 37,
    blockSizeTokens: BLOCK,
    numerics: {
      deviceKind: "reference",
      precisionPath: "f32",
      bitExact: true,
      maxAbsError: 0,
      maxRelError: 0,
    },
  };
  const cache = createKvCache(d);
  const tokens = Array.from({ length: 40 }, (_, i) => (i * 37 + 11) % 251);
  for (let layer = 0; layer < d.numLayers; layer++) {
    for (const part of partsOf(d)) {
      kv.fill(cache.part(layer, part), {
        tokens,
        layer,
        part,
        tokenStart: 3,
        tokenCount: 37,
        dtype,
      });
    }
  }
  return cache;
}

interface Case {
  readonly id: string;
  readonly cache: KvCache;
  readonly options: VllmPagedSinkOptions;
  readonly family: "legacy" | "standard";
  readonly pool: Uint8Array;
  readonly peer: Record<string, unknown>;
}

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");

async function buildCase(
  shape: SyntheticModelShape,
  dtype: KvDtype,
  variant: Variant,
): Promise<Case> {
  const cache = referenceCache(shape, dtype);
  const d = cache.descriptor;
  const mla = d.attention.kind === "mla";
  const heads = mla ? 1 : d.headRange.count;
  const headSize = mla ? 40 : 16;
  const pool = { attention: d.attention.kind, numKvHeads: heads, headSize, dtype };
  const layout = resolveVllmPoolLayout({ ...variant.options, attention: d.attention.kind });
  const base = {
    ...pool,
    blockTable,
    blockSizeTokens: BLOCK,
    numBlocks: NUM_BLOCKS,
    ...variant.options,
  };
  let options: VllmPagedSinkOptions;
  let target: Uint8Array;
  if (layout.family === "standard") {
    const std = { ...base, layout: layout.layout, numLayers: d.numLayers };
    target = new Uint8Array(vllmStandardGeometry(pool, std).byteLength).fill(0xee);
    options = { ...base, numLayers: d.numLayers, allocation: target };
  } else {
    const bytes =
      (mla ? 1 : 2) * NUM_BLOCKS * BLOCK * heads * headSize * (dtype === "fp8_e4m3fn" ? 1 : 2);
    const pools = Array.from({ length: d.numLayers }, () => new Uint8Array(bytes).fill(0xee));
    target = pools[LAYER] as Uint8Array;
    options = { ...base, pools };
  }
  const sink = createVllmPagedSink(options);
  await sink.open(d);
  for (let layer = 0; layer < d.numLayers; layer++) await sink.writeLayer(cache.layer(layer));
  await sink.commit(stats);
  const peer = {
    id: `${shape.name} ${dtype} ${variant.name}`,
    family: layout.family,
    layout: layout.family === "standard" ? layout.layout : undefined,
    order: layout.family === "legacy" ? layout.order : undefined,
    cacheLayout: layout.family === "legacy" ? layout.physicalLayout.toUpperCase() : undefined,
    kernelBlockSize: variant.options.kernelBlockSizeTokens,
    pagePadded: variant.options.pagePaddedBytes,
    dtype: DTYPES[dtype],
    mla,
    numLayers: d.numLayers,
    numBlocks: NUM_BLOCKS,
    blockSize: BLOCK,
    numKvHeads: heads,
    headSize,
    layer: LAYER,
    tokenStart: d.tokenStart,
    tokenCount: d.tokenCount,
    blockTable,
    pool: b64(target),
    kIn: b64(cache.part(LAYER, mla ? "latent" : "k")),
    vIn: mla ? undefined : b64(cache.part(LAYER, "v")),
  };
  return { id: peer.id, cache, options, family: layout.family, pool: target, peer };
}

interface PeerResult {
  readonly id: string;
  readonly k: string;
  readonly v?: string;
  readonly written: string;
  readonly size: number;
  readonly viewShape: number[];
  readonly viewStride: number[];
}

function runPeer(cases: readonly Case[]): Map<string, PeerResult> {
  const result = spawnSync(PYTHON, [PEER], {
    input: JSON.stringify({ cases: cases.map((c) => c.peer) }),
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
    timeout: 60_000,
  });
  if (result.status !== 0)
    throw new Error(`vllm_pool_peer.py failed (${result.status}): ${result.stderr}`);
  const lines = result.stdout
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as PeerResult);
  return new Map(lines.map((r) => [r.id, r]));
}

describe.skipIf(skip !== undefined)(
  "vLLM pools against vLLM's own views and indexing (torch peer)",
  () => {
    it("every layout, dtype and model shape: OPAL's pool reads right through vLLM, vLLM's pool reads right through OPAL, and a wrong layout is refused", async () => {
      const cases: Case[] = [];
      for (const shape of SHAPES) {
        const mla = shape.attention.kind === "mla";
        for (const dtype of Object.keys(DTYPES) as KvDtype[]) {
          const size = dtype === "fp8_e4m3fn" ? 1 : 2;
          const page = mla ? BLOCK * 40 * size : 2 * BLOCK * 16 * 2 * size;
          for (const variant of variants(mla, page))
            cases.push(await buildCase(shape, dtype, variant));
        }
      }
      const results = runPeer(cases);
      expect(results.size).toBe(cases.length);
      const failures: string[] = [];
      for (const c of cases) {
        const r = results.get(c.id) as PeerResult;
        const d = c.cache.descriptor;
        const mla = d.attention.kind === "mla";
        const k = c.cache.part(LAYER, mla ? "latent" : "k");
        // 1. What OPAL placed, read through vLLM's views and indexing, is the reference K and V.
        if (Buffer.compare(Buffer.from(r.k, "base64"), k) !== 0)
          failures.push(`${c.id}: K read by vLLM`);
        if (
          !mla &&
          Buffer.compare(Buffer.from(r.v as string, "base64"), c.cache.part(LAYER, "v")) !== 0
        )
          failures.push(`${c.id}: V read by vLLM`);
        // 2. vLLM allocates exactly the bytes OPAL asks for.
        if (r.size !== c.pool.byteLength)
          failures.push(`${c.id}: vLLM allocates ${r.size}, OPAL ${c.pool.byteLength}`);
        // 3. What vLLM wrote reads back through OPAL as the reference.
        const written = new Uint8Array(Buffer.from(r.written, "base64"));
        const back =
          c.family === "standard"
            ? fromVllmStandardLayer(written, {
                ...c.options,
                layout: resolveLayoutName(c.options),
                numLayers: d.numLayers,
                descriptor: d,
                layer: LAYER,
              })
            : fromVllmPagedLayer(written, { ...legacyOf(c.options), descriptor: d });
        if (Buffer.compare(back[mla ? "latent" : "k"] as Uint8Array, k) !== 0)
          failures.push(`${c.id}: K read by OPAL`);
        if (!mla && Buffer.compare(back.v as Uint8Array, c.cache.part(LAYER, "v")) !== 0)
          failures.push(`${c.id}: V read by OPAL`);
        // 4. The tensor vLLM built is accepted for its layout and refused for the other family's.
        const layerTensor = { shape: r.viewShape, stride: r.viewStride };
        try {
          createVllmPagedSink({ ...c.options, layerTensor });
        } catch (error) {
          failures.push(`${c.id}: its own tensor refused: ${(error as Error).message}`);
        }
        const { kernelBlockSizeTokens, pagePaddedBytes } = c.options;
        if (c.family === "standard" && !mla && !kernelBlockSizeTokens && !pagePaddedBytes) {
          // Another KVCacheLayout of the same size is refused too.
          const other = resolveLayoutName(c.options) === "LBNHC" ? "LBHNC" : "LBNHC";
          expect(() =>
            createVllmPagedSink({
              ...c.options,
              vllmVersion: undefined,
              layout: other,
              layerTensor,
            }),
          ).toThrow(/layerTensor: expected shape/);
        }
        const wrong = wrongLayout(c);
        expect(() => createVllmPagedSink({ ...wrong, layerTensor })).toThrow(
          /layerTensor: expected shape/,
        );
      }
      expect(failures).toEqual([]);
    }, 120_000);
  },
);

function resolveLayoutName(options: VllmPagedSinkOptions) {
  const layout = resolveVllmPoolLayout(options);
  if (layout.family !== "standard") throw new Error("not standard");
  return layout.layout;
}

function legacyOf(options: VllmPagedSinkOptions) {
  const layout = resolveVllmPoolLayout(options);
  if (layout.family !== "legacy") throw new Error("not legacy");
  return {
    order: layout.order,
    physicalLayout: layout.physicalLayout,
    numBlocks: NUM_BLOCKS,
    blockTable,
    blockSizeTokens: BLOCK,
  };
}

/** The same memory described with a layout of the other family (same byte size). */
function wrongLayout(c: Case): VllmPagedSinkOptions {
  const { layout: _l, vllmVersion: _v, order: _o, pools: _p, allocation: _a, ...rest } = c.options;
  const mla = c.cache.descriptor.attention.kind === "mla";
  if (c.family === "standard") {
    const pools = [c.pool, c.pool, c.pool].map((p) => p.subarray(0, legacyBytes(c)));
    return {
      ...rest,
      kernelBlockSizeTokens: undefined,
      pagePaddedBytes: undefined,
      vllmVersion: "0.28",
      order: "flash_attn",
      pools,
      ...(mla ? {} : { layout: "nhd" }),
    };
  }
  return {
    ...rest,
    layout: "LBNHC",
    numLayers: 3,
    allocation: new Uint8Array(c.pool.byteLength * 3),
  };
}

function legacyBytes(c: Case): number {
  const d = c.cache.descriptor;
  const o = c.options;
  return (
    (d.attention.kind === "mla" ? 1 : 2) *
    NUM_BLOCKS *
    BLOCK *
    o.numKvHeads *
    o.headSize *
    (d.dtype === "fp8_e4m3fn" ? 1 : 2)
  );
}
