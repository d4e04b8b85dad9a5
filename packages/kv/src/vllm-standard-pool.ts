import { checkBlockTable } from "./check-block-table";
import {
  assertValidDescriptor,
  dtypeByteSize,
  headCountOf,
  headDimOf,
  type KvDescriptor,
  type KvDtype,
  type KvPart,
  partByteLength,
} from "./descriptor";
import type { KvCache } from "./kv-cache";
import { KvFormatError } from "./kv-format-error";
import {
  resolveVllmPoolLayout,
  type VllmKvCacheLayout,
  vllmStrideOrder,
} from "./vllm-kv-cache-layout";

/**
 * Where a request lives in a vLLM >= 0.29 KV cache allocation: one buffer for the `numLayers`
 * same-shaped layers of a KV cache group (vLLM's `KVCacheTensor`), viewed per layer as
 * `[blocks, heads, block_size, C]` with `C = (head_size + head_size_v) * dtype bytes` (mla:
 * `head_size_v = 0`, `C = 576 * dtype bytes` for DeepSeek), K then V, in the physical order of
 * `layout`.
 */
export interface VllmStandardPoolOptions {
  /** The `KVCacheLayout` member the decoder resolved, or its alias "NHD" (LBNHC) / "HND" (LBHNC). */
  readonly layout: VllmKvCacheLayout | "NHD" | "HND";
  /** Layers in the allocation (`len(KVCacheTensor.layers)`). */
  readonly numLayers: number;
  /** Blocks of the KV cache manager (`KVCacheConfig.num_blocks`). */
  readonly numBlocks: number;
  /** The request's block table in manager blocks: logical block i -> block id. */
  readonly blockTable: ArrayLike<number>;
  /** Tokens per manager block (`--block-size`); default `descriptor.blockSizeTokens`. */
  readonly blockSizeTokens?: number;
  /**
   * Tokens per kernel block when the attention backend splits each manager block into
   * `blockSizeTokens / kernelBlockSizeTokens` kernel blocks; default `blockSizeTokens` (no split).
   */
  readonly kernelBlockSizeTokens?: number;
  /** `page_size_padded` of the layer spec: bytes per (layer, block) page including padding. */
  readonly pagePaddedBytes?: number;
  /** `KVCacheTensor.layer_stride` in bytes; default what vLLM computes for `layout`. */
  readonly layerStrideBytes?: number;
  /** `KVCacheTensor.block_stride` in bytes (manager blocks); default what vLLM computes. */
  readonly blockStrideBytes?: number;
  /** `KVCacheTensor.offset`: byte offset of layer 0's block 0; default 0. */
  readonly offsetBytes?: number;
}

/** The geometry of a vLLM >= 0.29 allocation as vLLM's `create_kv_cache_views` builds it. */
export interface VllmStandardGeometry {
  readonly layout: VllmKvCacheLayout;
  /** Logical `[L, B, H, N, C]` shape in kernel blocks, C in bytes. */
  readonly shape: readonly number[];
  /** Byte strides of `shape`'s axes. */
  readonly strides: readonly number[];
  readonly offsetBytes: number;
  /** Manager blocks per kernel block split (1 without a split). */
  readonly kernelBlocksPerBlock: number;
  /** Bytes of K in C (`head_size * dtype bytes`); the rest of C is V (mla: none). */
  readonly keyBytes: number;
  /** Smallest allocation that holds every addressed byte. */
  readonly byteLength: number;
  /** Shape of one layer's view `[B, H, N, C / dtype bytes]` as torch reports it. */
  readonly layerViewShape: readonly number[];
  /** Element strides of that view (`tensor.stride()`). */
  readonly layerViewStrides: readonly number[];
}

function count(field: string, value: unknown, min: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `${field}: expected an integer >= ${min}, got ${String(value)}`,
      {
        field,
      },
    );
  }
  return value;
}

function layoutError(field: string, message: string): never {
  throw new KvFormatError("UNSUPPORTED_LAYOUT", `${field}: ${message}`, { field });
}

/**
 * Byte strides over `[L, B, H, N, C]` following vLLM's `compute_layout_strides`: dense in the
 * physical order of the layout, the page (the axes inside L and B) rounded up to `padded` bytes,
 * `fixed` strides taking precedence.
 */
function layoutStrides(
  shape: readonly number[],
  order: readonly number[],
  padded: number | undefined,
  fixed: readonly (number | undefined)[],
): number[] {
  const pageGridEnd = Math.max(order.indexOf(0), order.indexOf(1)) + 1;
  const strides = [0, 0, 0, 0, 0];
  let current = 1;
  for (let physical = 4; physical >= 0; physical--) {
    const axis = order[physical] as number;
    if (padded !== undefined && physical === pageGridEnd - 1) current = Math.max(current, padded);
    strides[axis] = fixed[axis] ?? current;
    current = (strides[axis] as number) * (shape[axis] as number);
  }
  return strides;
}

/** What one layer's pages hold, as vLLM's layer spec says: attention kind, heads, head size, dtype. */
export interface VllmPoolShape {
  readonly attention: "mha" | "mla";
  /** KV heads of this rank (`num_kv_heads`); 1 for mla. */
  readonly numKvHeads: number;
  /** `head_size` (mla: `kv_lora_rank + qk_rope_head_dim`, e.g. 576). */
  readonly headSize: number;
  /** Element type; fp8 pools are vLLM's uint8 tensors holding fp8 bits. */
  readonly dtype: KvDtype;
}

/** The pool shape a cache of `descriptor`'s shape needs. */
export function vllmPoolShapeOf(descriptor: KvDescriptor): VllmPoolShape {
  return {
    attention: descriptor.attention.kind,
    numKvHeads: headCountOf(descriptor),
    headSize: headDimOf(descriptor),
    dtype: descriptor.dtype,
  };
}

/**
 * The geometry of `options` for pages of `shape` (or of a cache `descriptor`'s shape), checking
 * every option: UNSUPPORTED_LAYOUT for a layout, padding or kernel split vLLM would refuse,
 * OUT_OF_RANGE for bad counts.
 */
export function vllmStandardGeometry(
  poolOf: VllmPoolShape | KvDescriptor,
  options: VllmStandardPoolOptions,
): VllmStandardGeometry {
  const pool = "modelFingerprint" in poolOf ? vllmPoolShapeOf(poolOf) : poolOf;
  const resolved = resolveVllmPoolLayout({ layout: options.layout, vllmVersion: "0.29" });
  if (resolved.family !== "standard")
    layoutError("layout", `${options.layout} is not a vLLM >= 0.29 layout`);
  const layout = resolved.layout;
  const order = vllmStrideOrder(layout);
  const size = dtypeByteSize(pool.dtype);
  const mla = pool.attention === "mla";
  const heads = count("numKvHeads", pool.numKvHeads, 1);
  const keyBytes = count("headSize", pool.headSize, 1) * size;
  const content = mla ? keyBytes : 2 * keyBytes;
  const numLayers = count("numLayers", options.numLayers, 1);
  const numBlocks = count("numBlocks", options.numBlocks, 1);
  const blockSize = count(
    "blockSizeTokens",
    options.blockSizeTokens ?? ("blockSizeTokens" in poolOf ? poolOf.blockSizeTokens : undefined),
    1,
  );
  const kernelBlock = count("kernelBlockSizeTokens", options.kernelBlockSizeTokens ?? blockSize, 1);
  if (blockSize % kernelBlock !== 0) {
    layoutError("kernelBlockSizeTokens", `${kernelBlock} must divide the block size ${blockSize}`);
  }
  const ratio = blockSize / kernelBlock;
  const page = heads * blockSize * content;
  const padded = options.pagePaddedBytes;
  if (padded !== undefined) {
    count("pagePaddedBytes", padded, page);
    if (padded % size !== 0)
      layoutError("pagePaddedBytes", `${padded} is not a multiple of the ${size}-byte dtype`);
    if (ratio !== 1)
      layoutError(
        "pagePaddedBytes",
        "padded pages cannot be split into kernel blocks (vLLM refuses this too)",
      );
    const gridEnd = Math.max(order.indexOf(0), order.indexOf(1)) + 1;
    if (gridEnd > 2 && heads !== 1) {
      layoutError(
        "pagePaddedBytes",
        `${layout} puts the head axis outside the page, so its pages cannot be padded (vLLM asserts this)`,
      );
    }
  }
  const fixedLayer = options.layerStrideBytes;
  const fixedBlock = options.blockStrideBytes;
  if (fixedLayer !== undefined) count("layerStrideBytes", fixedLayer, 1);
  if (fixedBlock !== undefined) count("blockStrideBytes", fixedBlock, 1);
  const offsetBytes = count("offsetBytes", options.offsetBytes ?? 0, 0);
  // The allocation's strides at manager-block granularity (what KVCacheTensor records) ...
  const managerShape = [numLayers, numBlocks, heads, blockSize, content];
  const manager = layoutStrides(managerShape, order, padded, [fixedLayer, fixedBlock]);
  let blockStride = manager[1] as number;
  if (ratio > 1) {
    // ... and split into kernel blocks only when a block is one dense page (create_kv_cache_views).
    if (blockStride !== page) {
      layoutError(
        "kernelBlockSizeTokens",
        `${layout} does not store blocks as dense pages (block stride ${blockStride} != page ${page}), so vLLM cannot split a block into ${ratio} kernel blocks of ${kernelBlock} tokens`,
      );
    }
    blockStride /= ratio;
  }
  const shape = [numLayers, numBlocks * ratio, heads, kernelBlock, content];
  const strides = layoutStrides(shape, order, padded, [manager[0], blockStride]);
  let last = offsetBytes;
  shape.forEach((n, axis) => {
    last += (n - 1) * (strides[axis] as number);
  });
  const outer = order[0] as number;
  const dense = (manager[outer] as number) * (managerShape[outer] as number);
  const byteLength = Math.max(last + 1, offsetBytes + dense);
  if (!Number.isSafeInteger(byteLength)) {
    throw new KvFormatError("LENGTH_LIMIT", `the allocation needs more than 2^53 bytes`, {
      field: "numBlocks",
    });
  }
  for (const axis of [0, 1, 2, 3]) {
    if ((strides[axis] as number) % size !== 0) {
      layoutError(
        "blockStrideBytes",
        `stride ${strides[axis]} of axis ${"LBHNC"[axis]} is not a multiple of the ${size}-byte dtype`,
      );
    }
  }
  return {
    layout,
    shape,
    strides,
    offsetBytes,
    kernelBlocksPerBlock: ratio,
    keyBytes,
    byteLength,
    layerViewShape: [numBlocks * ratio, heads, kernelBlock, content / size],
    layerViewStrides: [...strides.slice(1, 4).map((s) => s / size), 1],
  };
}

/** Calls `visit(token index, head, byte of (token, head) in the allocation)` for layer `layer`. */
function forEachSlot(
  descriptor: KvDescriptor,
  options: VllmStandardPoolOptions,
  layer: number,
  pool: Uint8Array,
  visit: (token: number, head: number, at: number) => void,
): VllmStandardGeometry {
  assertValidDescriptor(descriptor);
  const g = vllmStandardGeometry(descriptor, options);
  const [numLayers, , heads, kernelBlock] = g.shape as [number, number, number, number];
  if (!Number.isSafeInteger(layer) || layer < 0 || layer >= numLayers) {
    throw new KvFormatError("OUT_OF_RANGE", `layer ${layer}: expected 0..${numLayers - 1}`, {
      field: "layer",
    });
  }
  if (!(pool instanceof Uint8Array) || pool.byteLength < g.byteLength) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `pool is ${pool?.byteLength} bytes, expected at least ${g.byteLength} for ${g.layout} [L ${g.shape.join(", ")}]`,
      { field: "pool" },
    );
  }
  const blockSize = kernelBlock * g.kernelBlocksPerBlock;
  checkBlockTable(descriptor, options.blockTable, blockSize, options.numBlocks);
  const [sL, sB, sH, sN] = g.strides as [number, number, number, number];
  for (let i = 0; i < descriptor.tokenCount; i++) {
    const p = descriptor.tokenStart + i;
    const managerBlock = options.blockTable[Math.floor(p / blockSize)] as number;
    const inBlock = p % blockSize;
    const kernelBlockId = managerBlock * g.kernelBlocksPerBlock + Math.floor(inBlock / kernelBlock);
    const base = g.offsetBytes + layer * sL + kernelBlockId * sB + (inBlock % kernelBlock) * sN;
    for (let h = 0; h < heads; h++) visit(i, h, base + h * sH);
  }
  return g;
}

function cacheRow(descriptor: KvDescriptor, token: number, head: number): number {
  const heads = headCountOf(descriptor);
  return descriptor.layout === "nhd" ? token * heads + head : head * descriptor.tokenCount + token;
}

/**
 * Writes layer `layer` of `cache` into layer `layer` of a vLLM >= 0.29 allocation `pool` at the
 * slots of `blockTable` (token p: manager block `blockTable[p / blockSize]`, kernel block and offset
 * as vLLM splits it): per head and token, K then V side by side in C. Other bytes are untouched.
 * Everything is checked before the first byte is written: UNSUPPORTED_LAYOUT, OUT_OF_RANGE,
 * SHAPE_MISMATCH (pool too small), INVALID_OFFSETS (a block used twice).
 */
export function toVllmStandardLayer(
  cache: KvCache,
  options: VllmStandardPoolOptions & { readonly layer: number; readonly pool: Uint8Array },
): void {
  const d = cache.descriptor;
  const mla = d.attention.kind === "mla";
  const k = cache.part(options.layer, mla ? "latent" : "k");
  const v = mla ? undefined : cache.part(options.layer, "v");
  const row = headDimOf(d) * dtypeByteSize(d.dtype);
  const { pool } = options;
  forEachSlot(d, options, options.layer, pool, (token, head, at) => {
    const from = cacheRow(d, token, head) * row;
    pool.set(k.subarray(from, from + row), at);
    if (v) pool.set(v.subarray(from, from + row), at + row);
  });
}

/**
 * Reads layer `layer` of a request back from a vLLM >= 0.29 allocation into new parts in
 * `descriptor`'s layout (`k`, `v`; `latent` for mla). The inverse of {@link toVllmStandardLayer},
 * with the same checks.
 */
export function fromVllmStandardLayer(
  pool: Uint8Array,
  options: VllmStandardPoolOptions & { readonly descriptor: KvDescriptor; readonly layer: number },
): Partial<Record<KvPart, Uint8Array>> {
  const d = options.descriptor;
  const mla = d.attention.kind === "mla";
  const k = new Uint8Array(partByteLength(d, mla ? "latent" : "k"));
  const v = mla ? undefined : new Uint8Array(partByteLength(d, "v"));
  const row = headDimOf(d) * dtypeByteSize(d.dtype);
  forEachSlot(d, options, options.layer, pool, (token, head, at) => {
    const to = cacheRow(d, token, head) * row;
    k.set(pool.subarray(at, at + row), to);
    if (v) v.set(pool.subarray(at + row, at + 2 * row), to);
  });
  return mla ? { latent: k } : { k, v };
}
