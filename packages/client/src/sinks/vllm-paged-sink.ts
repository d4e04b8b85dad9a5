import {
  dtypeByteSize,
  KV_DTYPES,
  type KvDescriptor,
  type KvDtype,
  type KvLayerParts,
  type KvLayout,
  toVllmPagedLayer,
  type VllmPagedOptions,
  type VllmPagedOrder,
} from "@opal/kv";
import type { KvSink } from "../kv-sink";
import { assertFitsLayerTarget, checkCount } from "./check-layer-target";
import { createGuardedSink } from "./create-guarded-sink";
import { copyScales, layerAsCache, zeroLayer } from "./layer-as-cache";
import { descriptorMismatch, invalidOption } from "./sink-errors";

/**
 * Options of {@link createVllmPagedSink}: the caller's vLLM KV pools and what they hold. The pool
 * description (`attention`, `dtype`, `numKvHeads`, `headSize`, `blockSizeTokens`, `numBlocks`) is
 * checked against every pool's size here and against the cache's descriptor at `open`.
 */
export interface VllmPagedSinkOptions {
  /**
   * One pool per attention layer (the bytes of vLLM's per-layer KV tensor), caller-owned: mha
   * FlashAttention `(2, numBlocks, blockSizeTokens, numKvHeads, headSize)` or FlashInfer
   * `(numBlocks, 2, blockSizeTokens, numKvHeads, headSize)` (HND: heads before tokens in a block);
   * mla `(numBlocks, blockSizeTokens, headSize)` with `headSize = latent + rope`.
   */
  readonly pools: readonly Uint8Array[];
  /** The request's block table: logical block i -> physical block id (vLLM's int32 block table). */
  readonly blockTable: ArrayLike<number>;
  /** Tensor order of the attention backend; ignored for mla. */
  readonly order: VllmPagedOrder;
  /** Order inside a block: "nhd" `[block_size][heads][dim]` or "hnd" `[heads][block_size][dim]`; default "nhd". mla is always nhd. */
  readonly layout?: KvLayout;
  /** Tokens per block of the pools; must equal the cache's `blockSizeTokens`. */
  readonly blockSizeTokens: number;
  /** Blocks in each pool. */
  readonly numBlocks: number;
  /** Element type of the pools (vLLM's kv-cache dtype). */
  readonly dtype: KvDtype;
  /** KV heads held by this rank's pools (vLLM's `num_kv_heads` after the TP split); 1 for mla. */
  readonly numKvHeads: number;
  /** Elements per head (vLLM's `head_size`); `latent + rope` (e.g. 576) for mla. */
  readonly headSize: number;
  /** Attention kind of the pools; default "mha". */
  readonly attention?: "mha" | "mla";
}

/** What {@link createVllmPagedSink} committed. */
export interface VllmPagedReceipt {
  /** Distinct blocks of the block table written in each layer's pool. */
  readonly blocksWritten: number;
  /** Tokens written (the cache's `tokenCount`, positions `tokenStart`...). */
  readonly tokens: number;
  /**
   * Per layer, copies of the scale parts (`k_scale`, `v_scale` or `latent_scale`, little-endian f32)
   * that vLLM keeps outside the pool; empty when the cache has no scales (`scaleScheme` "none").
   */
  readonly scales: readonly KvLayerParts["parts"][];
}

/**
 * A sink that writes each layer straight into the caller's vLLM block pools, at the slots of the
 * request's block table (token at absolute position p: block `blockTable[p / blockSizeTokens]`,
 * offset `p % blockSizeTokens`; other slots untouched), as layers arrive.
 *
 * Ownership and visibility: the pools are written in place before `commit`, so the caller must not
 * let the decoder read the request's blocks before `commit` resolves. `abort` (or any failure)
 * zeroes every slot this sink wrote (the cache's token positions, in every layer touched); slots of
 * other tokens in the same blocks (e.g. a decoder prefix) are left as they were.
 *
 * `open` rejects with FAILED_PRECONDITION DESCRIPTOR_MISMATCH, naming the pool's value and the
 * cache's, when attention kind, dtype, heads, head size, block size or layer count differ or the
 * block table is too short for the cache's tokens. Bad options throw INVALID_ARGUMENT INVALID_FIELD
 * here (pool sizes, counts) or at `open` (block ids outside the pools, a block used twice).
 */
export function createVllmPagedSink(options: VllmPagedSinkOptions): KvSink<VllmPagedReceipt> {
  const { pools, blockTable, order } = options;
  const attention = options.attention ?? "mha";
  if (attention !== "mha" && attention !== "mla")
    throw invalidOption("attention", '"mha" or "mla"', attention);
  if (order !== "flash_attn" && order !== "flashinfer")
    throw invalidOption("order", '"flash_attn" or "flashinfer"', order);
  const layout = options.layout ?? "nhd";
  if (layout !== "nhd" && layout !== "hnd") throw invalidOption("layout", '"nhd" or "hnd"', layout);
  if (!KV_DTYPES.includes(options.dtype))
    throw invalidOption("dtype", KV_DTYPES.join(", "), options.dtype);
  const blockSize = checkCount("blockSizeTokens", options.blockSizeTokens, 1);
  const numBlocks = checkCount("numBlocks", options.numBlocks, 1);
  const heads = checkCount("numKvHeads", options.numKvHeads, 1);
  const headSize = checkCount("headSize", options.headSize, 1);
  if (attention === "mla" && heads !== 1) throw invalidOption("numKvHeads", "1 for mla", heads);
  if (!Array.isArray(pools) || pools.length === 0)
    throw invalidOption("pools", "one Uint8Array per layer", pools);
  if (!blockTable || typeof blockTable.length !== "number")
    throw invalidOption("blockTable", "an array of block ids", blockTable);
  const kvCount = attention === "mla" ? 1 : 2;
  const poolBytes =
    kvCount * numBlocks * blockSize * heads * headSize * dtypeByteSize(options.dtype);
  pools.forEach((pool, i) => {
    if (!(pool instanceof Uint8Array) || pool.byteLength !== poolBytes) {
      throw invalidOption(
        `pools[${i}]`,
        `${poolBytes} bytes (${kvCount === 2 ? "2 x " : ""}${numBlocks} blocks x ${blockSize} tokens x ${heads} heads x ${headSize} x ${options.dtype})`,
        pool,
      );
    }
  });

  let descriptor: KvDescriptor | undefined;
  let paged: VllmPagedOptions | undefined;
  let blocksWritten = 0;
  let touched = 0;
  let scales: KvLayerParts["parts"][] = [];

  return createGuardedSink<VllmPagedReceipt>({
    open(d) {
      assertFitsLayerTarget(d, {
        noun: "pools",
        layerNoun: "pools",
        headsField: "num_kv_heads",
        headDimField: "head_size",
        attention,
        dtype: options.dtype,
        heads: heads,
        headDim: headSize,
        layers: pools.length,
      });
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
      paged = { order, physicalLayout: layout, numBlocks, blockTable, blockSizeTokens: blockSize };
    },

    writeLayer(layer) {
      const d = descriptor as KvDescriptor;
      touched = layer.layer + 1;
      toVllmPagedLayer(layerAsCache(d, layer), {
        ...(paged as VllmPagedOptions),
        layer: layer.layer,
        pool: pools[layer.layer] as Uint8Array,
      });
      if (d.scaleScheme !== "none") scales.push(copyScales(d, layer));
    },

    commit() {
      return { blocksWritten, tokens: (descriptor as KvDescriptor).tokenCount, scales };
    },

    discard() {
      const d = descriptor;
      scales = [];
      if (!d || !paged) return;
      for (let layer = 0; layer < touched; layer++) {
        toVllmPagedLayer(layerAsCache(d, zeroLayer(d, layer)), {
          ...paged,
          layer,
          pool: pools[layer] as Uint8Array,
        });
      }
    },
  });
}
