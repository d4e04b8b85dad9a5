import {
  dtypeByteSize,
  KV_DTYPES,
  type KvDescriptor,
  type KvDtype,
  type KvLayerParts,
  resolveVllmPoolLayout,
  toVllmPagedLayer,
  toVllmStandardLayer,
  type VllmPagedOptions,
  type VllmPagedOrder,
  type VllmPoolLayout,
  type VllmStandardPoolOptions,
  vllmStandardGeometry,
} from "@opal/kv";
import { invalidOption } from "../options/invalid-option";
import { assertFitsLayerTarget, checkCount } from "./check-layer-target";
import { createGuardedSink } from "./create-guarded-sink";
import type { KvSink } from "./kv-sink";
import { copyScales, layerAsCache, zeroLayer } from "./layer-as-cache";
import { descriptorMismatch } from "./sink-errors";
import { expectedLayerTensor, sameLayerTensor, type VllmLayerTensor } from "./vllm-layer-tensor";

export type { VllmLayerTensor } from "./vllm-layer-tensor";

/**
 * Options of {@link createVllmPagedSink}: the caller's vLLM KV memory, which vLLM layout it has
 * (stated, never guessed) and what it holds. Both vLLM families store the same bytes per pool, so
 * the layout must come from `layout` and/or `vllmVersion`; see `resolveVllmPoolLayout` of
 * `@opal/kv` for the accepted combinations.
 *
 * - vLLM >= 0.29 (standardized, PR #51718): `layout` is the `KVCacheLayout` the decoder resolved
 *   ("LBNHC" default, "LBHNC", "LHBNC", "BLHNC", "BLNHC", "BHLNC"; "NHD"/"HND" with `vllmVersion`),
 *   and `allocation` is the one buffer of the layers (vLLM's `KVCacheTensor`), each layer viewed as
 *   `[blocks, heads, block_size, (head_size + head_size_v) * dtype bytes]`, K then V.
 * - vLLM <= 0.28: `layout` "flash_attn_nhd", "flash_attn_hnd", "flashinfer_nhd" or "flashinfer_hnd"
 *   (or `vllmVersion: "0.28"` with `order` and "nhd"/"hnd"), and `pools` one tensor per layer:
 *   FlashAttention `(2, numBlocks, blockSizeTokens, numKvHeads, headSize)`, FlashInfer
 *   `(numBlocks, 2, ...)`, mla `(numBlocks, blockSizeTokens, headSize)`.
 */
export interface VllmPagedSinkOptions {
  /** The pool layout: a `KVCacheLayout` member, a legacy name, or "NHD"/"HND"/"nhd"/"hnd" with `vllmVersion`. */
  readonly layout?: string;
  /** The decoder's vLLM version ("0.28", "0.29.1", ...): <= 0.28 legacy pools, >= 0.29 standardized. */
  readonly vllmVersion?: string;
  /** vLLM <= 0.28 only (with `vllmVersion`): the backend's tensor order; not needed for mla. */
  readonly order?: VllmPagedOrder;
  /** vLLM <= 0.28: one pool per attention layer (the bytes of its KV tensor), caller-owned. */
  readonly pools?: readonly Uint8Array[];
  /** vLLM >= 0.29: the allocation holding all layers (`KVCacheTensor`), caller-owned. */
  readonly allocation?: Uint8Array;
  /** vLLM >= 0.29: layers in `allocation` (`len(KVCacheTensor.layers)`); must equal the cache's. */
  readonly numLayers?: number;
  /** vLLM >= 0.29: tokens per kernel block when the backend splits blocks; default no split. */
  readonly kernelBlockSizeTokens?: number;
  /** vLLM >= 0.29: `page_size_padded` of the layer spec, if set (hybrid models, DeepSeek V4 MLA). */
  readonly pagePaddedBytes?: number;
  /** vLLM >= 0.29: `KVCacheTensor.layer_stride`, `block_stride`, `offset`; default vLLM's for `layout`. */
  readonly layerStrideBytes?: number;
  readonly blockStrideBytes?: number;
  readonly offsetBytes?: number;
  /**
   * What torch reports for one layer's KV tensor (`list(kv_cache.shape)`, `kv_cache.stride()`).
   * When given, it must be the tensor of the stated layout, or the sink is refused: the cheapest way
   * to catch a layout that does not match the decoder.
   */
  readonly layerTensor?: VllmLayerTensor;
  /** The request's block table: logical block i -> block id (vLLM's manager block ids). */
  readonly blockTable: ArrayLike<number>;
  /** Tokens per block (`--block-size`); must equal the cache's `blockSizeTokens`. */
  readonly blockSizeTokens: number;
  /** Blocks in the pools (`num_gpu_blocks`). */
  readonly numBlocks: number;
  /** The cache's dtype; vLLM's fp8 caches ("fp8", "fp8_e4m3", "fp8_e5m2") are uint8 pools of those bits. */
  readonly dtype: KvDtype;
  /** KV heads held by this rank (vLLM's `num_kv_heads` after the TP split); 1 for mla. */
  readonly numKvHeads: number;
  /** Elements per head (vLLM's `head_size`); `latent + rope` (e.g. 576) for mla. */
  readonly headSize: number;
  /** Attention kind of the pools; default "mha". */
  readonly attention?: "mha" | "mla";
}

/** What {@link createVllmPagedSink} committed. */
export interface VllmPagedReceipt {
  /** Distinct blocks of the block table written in each layer. */
  readonly blocksWritten: number;
  /** Tokens written (the cache's `tokenCount`, positions `tokenStart`...). */
  readonly tokens: number;
  /**
   * Per layer, copies of the per-tensor scale parts (`k_scale`, `v_scale` or `latent_scale`,
   * little-endian f32): the values vLLM's static per-layer `k_scale`/`v_scale` must hold to read
   * the fp8 bytes. Empty when the cache has no scales (`scaleScheme` "none", i.e. scale 1.0).
   */
  readonly scales: readonly KvLayerParts["parts"][];
}

interface Target {
  readonly layout: VllmPoolLayout;
  readonly layers: number;
  write(layer: number, cache: ReturnType<typeof layerAsCache>): void;
}

function legacyTarget(
  options: VllmPagedSinkOptions,
  layout: VllmPoolLayout & { family: "legacy" },
  shape: { attention: "mha" | "mla"; numKvHeads: number; headSize: number; dtype: KvDtype },
): Target {
  const { pools } = options;
  if (options.allocation !== undefined) {
    throw invalidOption(
      "allocation",
      "no allocation for a vLLM <= 0.28 layout (pass pools, one per layer)",
      options.allocation,
    );
  }
  if (!Array.isArray(pools) || pools.length === 0)
    throw invalidOption("pools", "one Uint8Array per layer", pools);
  const paged: VllmPagedOptions = {
    order: layout.order,
    physicalLayout: layout.physicalLayout,
    numBlocks: options.numBlocks,
    blockTable: options.blockTable,
    blockSizeTokens: options.blockSizeTokens,
  };
  const poolBytes =
    (shape.attention === "mla" ? 1 : 2) *
    options.numBlocks *
    options.blockSizeTokens *
    shape.numKvHeads *
    shape.headSize *
    dtypeByteSize(shape.dtype);
  pools.forEach((pool, i) => {
    if (!(pool instanceof Uint8Array) || pool.byteLength !== poolBytes) {
      throw invalidOption(
        `pools[${i}]`,
        `${poolBytes} bytes (${shape.attention === "mla" ? "" : "2 x "}${options.numBlocks} blocks x ${options.blockSizeTokens} tokens x ${shape.numKvHeads} heads x ${shape.headSize} x ${shape.dtype})`,
        pool,
      );
    }
  });
  return {
    layout,
    layers: pools.length,
    write(layer, cache) {
      toVllmPagedLayer(cache, { ...paged, layer, pool: pools[layer] as Uint8Array });
    },
  };
}

function standardTarget(
  options: VllmPagedSinkOptions,
  layout: VllmPoolLayout & { family: "standard" },
  shape: { attention: "mha" | "mla"; numKvHeads: number; headSize: number; dtype: KvDtype },
): Target {
  const { allocation } = options;
  if (options.pools !== undefined) {
    throw invalidOption(
      "pools",
      `no per-layer pools for ${layout.layout} (vLLM >= 0.29 keeps the layers in one allocation)`,
      options.pools,
    );
  }
  const std: VllmStandardPoolOptions = {
    layout: layout.layout,
    numLayers: checkCount("numLayers", options.numLayers, 1),
    numBlocks: options.numBlocks,
    blockTable: options.blockTable,
    blockSizeTokens: options.blockSizeTokens,
    kernelBlockSizeTokens: options.kernelBlockSizeTokens,
    pagePaddedBytes: options.pagePaddedBytes,
    layerStrideBytes: options.layerStrideBytes,
    blockStrideBytes: options.blockStrideBytes,
    offsetBytes: options.offsetBytes,
  };
  const g = vllmStandardGeometry(shape, std);
  const exact = options.layerStrideBytes === undefined && options.blockStrideBytes === undefined;
  if (
    !(allocation instanceof Uint8Array) ||
    (exact ? allocation.byteLength !== g.byteLength : allocation.byteLength < g.byteLength)
  ) {
    throw invalidOption(
      "allocation",
      `${exact ? "" : "at least "}${g.byteLength} bytes (${layout.layout}: ${std.numLayers} layers x ${options.numBlocks} blocks x ${shape.numKvHeads} heads x ${options.blockSizeTokens} tokens x ${g.shape[4]} bytes${options.pagePaddedBytes ? `, pages padded to ${options.pagePaddedBytes}` : ""})`,
      allocation,
    );
  }
  return {
    layout,
    layers: std.numLayers,
    write(layer, cache) {
      toVllmStandardLayer(cache, { ...std, layer, pool: allocation });
    },
  };
}

/**
 * A sink that writes each layer straight into the caller's vLLM KV memory, at the slots of the
 * request's block table (token at absolute position p: block `blockTable[p / blockSizeTokens]`,
 * offset `p % blockSizeTokens`, split into kernel blocks as vLLM does; other slots untouched), as
 * layers arrive, in the layout the options state (see {@link VllmPagedSinkOptions}).
 *
 * Ownership and visibility: the memory is written in place before `commit`, so the caller must not
 * let the decoder read the request's blocks before `commit` resolves. `abort` (or any failure)
 * zeroes every slot this sink wrote (the cache's token positions, in every layer touched); slots of
 * other tokens in the same blocks (e.g. a decoder prefix) are left as they were.
 *
 * Throws here INVALID_ARGUMENT: UNSUPPORTED_LAYOUT when the layout is missing, ambiguous ("NHD"
 * without `vllmVersion`) or contradicts `vllmVersion`; INVALID_FIELD for memory of the wrong size or
 * kind, a `layerTensor` that is not the stated layout's, bad counts. `open` rejects with
 * FAILED_PRECONDITION DESCRIPTOR_MISMATCH, naming the pool's value and the cache's, when attention
 * kind, dtype, heads, head size, block size or layer count differ, the block table is too short, or
 * the cache has per-token or per-head scales (vLLM's fp8 caches have static per-layer scales only);
 * INVALID_ARGUMENT for block ids outside the pools or a block used twice.
 */
export function createVllmPagedSink(options: VllmPagedSinkOptions): KvSink<VllmPagedReceipt> {
  const { blockTable } = options;
  const attention = options.attention ?? "mha";
  if (attention !== "mha" && attention !== "mla")
    throw invalidOption("attention", '"mha" or "mla"', attention);
  if (!KV_DTYPES.includes(options.dtype))
    throw invalidOption("dtype", KV_DTYPES.join(", "), options.dtype);
  const blockSize = checkCount("blockSizeTokens", options.blockSizeTokens, 1);
  const numBlocks = checkCount("numBlocks", options.numBlocks, 1);
  const heads = checkCount("numKvHeads", options.numKvHeads, 1);
  const headSize = checkCount("headSize", options.headSize, 1);
  if (attention === "mla" && heads !== 1) throw invalidOption("numKvHeads", "1 for mla", heads);
  if (!blockTable || typeof blockTable.length !== "number")
    throw invalidOption("blockTable", "an array of block ids", blockTable);
  const layout = resolveVllmPoolLayout({ ...options, attention });
  const shape = { attention, numKvHeads: heads, headSize, dtype: options.dtype };
  const target =
    layout.family === "legacy"
      ? legacyTarget(options, layout, shape)
      : standardTarget(options, layout, shape);
  if (options.layerTensor !== undefined) {
    const expected = expectedLayerTensor(layout, { ...options, ...shape, attention });
    const got = options.layerTensor;
    if (!sameLayerTensor(got, expected)) {
      throw invalidOption(
        "layerTensor",
        `shape [${expected.shape}] stride [${expected.stride}] (${expected.name})`,
        `shape [${got.shape}] stride [${got.stride}]`,
      );
    }
  }

  let descriptor: KvDescriptor | undefined;
  let blocksWritten = 0;
  let touched = 0;
  let scales: KvLayerParts["parts"][] = [];

  return createGuardedSink<VllmPagedReceipt>({
    open(d) {
      assertFitsLayerTarget(d, {
        noun: "pools",
        layerNoun: layout.family === "legacy" ? "pools" : "allocation layers",
        headsField: "num_kv_heads",
        headDimField: "head_size",
        attention,
        dtype: options.dtype,
        heads,
        headDim: headSize,
        layers: target.layers,
      });
      if (d.scaleScheme === "per_token" || d.scaleScheme === "per_head") {
        throw descriptorMismatch(
          "scales",
          "vLLM's fp8 KV caches have static per-layer k_scale/v_scale",
          `the cache has ${d.scaleScheme} scales (prepare it with per_tensor or none)`,
        );
      }
      if (d.blockSizeTokens !== blockSize) {
        throw descriptorMismatch(
          "block_size",
          `the pools use ${blockSize} tokens per block`,
          `the cache was prepared for ${d.blockSizeTokens}`,
        );
      }
      const first = Math.floor(d.tokenStart / blockSize);
      const last = Math.floor((d.tokenStart + d.tokenCount - 1) / blockSize);
      if (blockTable.length <= last) {
        throw descriptorMismatch(
          "blockTable",
          `${blockTable.length} entries cover tokens [0, ${blockTable.length * blockSize})`,
          `the cache holds tokens [${d.tokenStart}, ${d.tokenStart + d.tokenCount})`,
        );
      }
      const seen = new Set<number>();
      for (let i = first; i <= last; i++) {
        const block = blockTable[i];
        if (
          typeof block !== "number" ||
          !Number.isInteger(block) ||
          block < 0 ||
          block >= numBlocks
        )
          throw invalidOption(`blockTable[${i}]`, `a block id in [0, ${numBlocks})`, block);
        if (seen.has(block))
          throw invalidOption(`blockTable[${i}]`, "a block not used by another entry", block);
        seen.add(block);
      }
      blocksWritten = seen.size;
      descriptor = d;
    },

    writeLayer(layer) {
      const d = descriptor as KvDescriptor;
      touched = Math.max(touched, layer.layer + 1);
      target.write(layer.layer, layerAsCache(d, layer));
      if (d.scaleScheme !== "none") scales.push(copyScales(d, layer));
    },

    commit() {
      return { blocksWritten, tokens: (descriptor as KvDescriptor).tokenCount, scales };
    },

    discard() {
      const d = descriptor;
      scales = [];
      if (!d) return;
      for (let layer = 0; layer < touched; layer++)
        target.write(layer, layerAsCache(d, zeroLayer(d, layer)));
    },
  });
}
