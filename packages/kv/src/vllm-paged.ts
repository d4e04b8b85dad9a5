import { checkBlockTable } from "./check-block-table";
import {
  assertValidDescriptor,
  headCountOf,
  type KvDescriptor,
  type KvLayout,
  type KvPart,
  partByteLength,
} from "./descriptor";
import type { KvCache } from "./kv-cache";
import { KvFormatError } from "./kv-format-error";
import { rowBytesOf } from "./to-kv-layout";

/**
 * Order of vLLM's per-layer paged KV tensor: FlashAttention `(2, num_blocks, block_size, heads,
 * dim)` or FlashInfer `(num_blocks, 2, block_size, heads, dim)`. Ignored for mla, whose pool is
 * `(num_blocks, block_size, latent + rope)`.
 */
export type VllmPagedOrder = "flash_attn" | "flashinfer";

/** Where one layer of a request lives in a vLLM block pool. */
export interface VllmPagedOptions {
  readonly order: VllmPagedOrder;
  /**
   * Physical order inside a block: "nhd" `[block_size][heads][dim]` (vLLM default) or "hnd"
   * `[heads][block_size][dim]` (heads before tokens, e.g. NixlConnector's HND). Default "nhd".
   */
  readonly physicalLayout?: KvLayout;
  /** Number of blocks in the pool tensor. */
  readonly numBlocks: number;
  /** The request's block table: logical block i -> physical block id (vLLM's int32 block table). */
  readonly blockTable: ArrayLike<number>;
  /** Tokens per block; default `descriptor.blockSizeTokens`. */
  readonly blockSizeTokens?: number;
}

interface Geometry {
  readonly parts: readonly KvPart[];
  readonly kvCount: number;
  readonly heads: number;
  readonly rowBytes: number;
  readonly blockSize: number;
  readonly physical: KvLayout;
  readonly order: VllmPagedOrder;
  readonly numBlocks: number;
  readonly poolBytes: number;
}

function geometryOf(descriptor: KvDescriptor, options: VllmPagedOptions): Geometry {
  assertValidDescriptor(descriptor);
  const mla = descriptor.attention.kind === "mla";
  const blockSize = options.blockSizeTokens ?? descriptor.blockSizeTokens;
  const heads = headCountOf(descriptor);
  const rowBytes = rowBytesOf(descriptor);
  const kvCount = mla ? 1 : 2;
  const numBlocks = options.numBlocks;
  if (
    !Number.isSafeInteger(numBlocks) ||
    numBlocks < 1 ||
    !Number.isSafeInteger(blockSize) ||
    blockSize < 1
  ) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `numBlocks ${numBlocks} and blockSizeTokens ${blockSize} must be integers >= 1`,
    );
  }
  if (options.order !== "flash_attn" && options.order !== "flashinfer") {
    throw new KvFormatError(
      "UNSUPPORTED_LAYOUT",
      `order ${JSON.stringify(options.order)}, expected "flash_attn" or "flashinfer"`,
      { field: "order" },
    );
  }
  const physical = mla ? "nhd" : (options.physicalLayout ?? "nhd");
  if (physical !== "nhd" && physical !== "hnd") {
    throw new KvFormatError(
      "UNSUPPORTED_LAYOUT",
      `physicalLayout ${JSON.stringify(physical)}, expected "nhd" or "hnd"`,
      { field: "physicalLayout" },
    );
  }
  const poolBytes = kvCount * numBlocks * blockSize * heads * rowBytes;
  if (!Number.isSafeInteger(poolBytes)) {
    throw new KvFormatError(
      "LENGTH_LIMIT",
      `a pool of ${numBlocks} blocks of ${blockSize} tokens needs more than 2^53 bytes`,
      { field: "numBlocks" },
    );
  }
  return {
    parts: mla ? ["latent"] : ["k", "v"],
    kvCount,
    heads,
    rowBytes,
    blockSize,
    physical,
    order: options.order,
    numBlocks,
    poolBytes,
  };
}

/** Byte offset in the pool of row (kv, block, offset, head). */
function poolRow(g: Geometry, kv: number, block: number, offset: number, head: number): number {
  const plane =
    g.order === "flash_attn" || g.kvCount === 1 ? kv * g.numBlocks + block : block * 2 + kv;
  const row =
    g.physical === "nhd"
      ? (plane * g.blockSize + offset) * g.heads + head
      : (plane * g.heads + head) * g.blockSize + offset;
  return row * g.rowBytes;
}

function forEachRow(
  descriptor: KvDescriptor,
  g: Geometry,
  blockTable: ArrayLike<number>,
  visit: (kv: number, cacheByte: number, poolByte: number) => void,
): void {
  checkBlockTable(descriptor, blockTable, g.blockSize, g.numBlocks);
  const t = descriptor.tokenCount;
  for (let i = 0; i < t; i++) {
    const position = descriptor.tokenStart + i;
    const block = blockTable[Math.floor(position / g.blockSize)] as number;
    const offset = position % g.blockSize;
    for (let kv = 0; kv < g.kvCount; kv++) {
      for (let h = 0; h < g.heads; h++) {
        const cacheRow = descriptor.layout === "nhd" ? i * g.heads + h : h * t + i;
        visit(kv, cacheRow * g.rowBytes, poolRow(g, kv, block, offset, h));
      }
    }
  }
}

function checkPool(pool: Uint8Array, g: Geometry): void {
  if (pool.byteLength !== g.poolBytes) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `pool is ${pool.byteLength} bytes, expected ${g.kvCount === 1 ? "" : "2 x "}${g.numBlocks} blocks x ${g.blockSize} tokens x ${g.heads} heads x ${g.rowBytes} bytes = ${g.poolBytes}`,
      { field: "pool" },
    );
  }
}

/**
 * Writes layer `layer` of `cache` into a caller-given vLLM block pool (one layer's KV tensor, same
 * dtype, heads = `headRange.count`) at the slots of `blockTable`: token at absolute position p goes
 * to block `blockTable[p / blockSize]`, offset `p % blockSize`. Other slots are untouched. Scales
 * are not written (vLLM keeps `k_scale`/`v_scale` per layer outside the pool). All arguments are
 * checked before the first byte is written, so a rejected call leaves the pool unchanged:
 * UNSUPPORTED_LAYOUT (order, physicalLayout), SHAPE_MISMATCH (pool size), OUT_OF_RANGE (a block id
 * missing or outside the pool), INVALID_OFFSETS (two logical blocks on one physical block).
 */
export function toVllmPagedLayer(
  cache: KvCache,
  options: VllmPagedOptions & { readonly layer: number; readonly pool: Uint8Array },
): void {
  const g = geometryOf(cache.descriptor, options);
  checkPool(options.pool, g);
  const srcs = g.parts.map((part) => cache.part(options.layer, part));
  const { pool } = options;
  const rb = g.rowBytes;
  forEachRow(cache.descriptor, g, options.blockTable, (kv, from, to) => {
    pool.set((srcs[kv] as Uint8Array).subarray(from, from + rb), to);
  });
}

/**
 * Reads one layer of a request back from a vLLM block pool into new parts in `descriptor`'s layout
 * (`k`, `v`, or `latent` for mla). The inverse of {@link toVllmPagedLayer}, with the same checks.
 */
export function fromVllmPagedLayer(
  pool: Uint8Array,
  options: VllmPagedOptions & { readonly descriptor: KvDescriptor },
): Partial<Record<KvPart, Uint8Array>> {
  const { descriptor } = options;
  const g = geometryOf(descriptor, options);
  checkPool(pool, g);
  const outs = g.parts.map((part) => new Uint8Array(partByteLength(descriptor, part)));
  const rb = g.rowBytes;
  forEachRow(descriptor, g, options.blockTable, (kv, to, from) => {
    (outs[kv] as Uint8Array).set(pool.subarray(from, from + rb), to);
  });
  const result: Partial<Record<KvPart, Uint8Array>> = {};
  g.parts.forEach((part, i) => {
    result[part] = outs[i] as Uint8Array;
  });
  return result;
}

/** Byte length of a vLLM pool tensor for one layer of `descriptor`'s shape and dtype. */
export function vllmPoolByteLength(descriptor: KvDescriptor, options: VllmPagedOptions): number {
  return geometryOf(descriptor, options).poolBytes;
}
