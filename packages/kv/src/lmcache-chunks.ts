import { assertValidDescriptor, headCountOf, type KvDescriptor, type KvPart } from "./descriptor";
import { createKvCache, type KvCache } from "./kv-cache";
import { KvFormatError } from "./kv-format-error";
import { rowBytesOf } from "./to-kv-layout";

/** LMCache's default chunk size: 256 tokens. */
export const LMCACHE_CHUNK_TOKENS = 256;

/**
 * Byte order of an LMCache chunk. `"kv_2ltd"`: LMCache v1's `MemoryFormat.KV_2LTD` memory objects
 * (what its connector for vLLM stores), K/V outermost, `[2, num_layers, tokens, heads * head_dim]`;
 * mla `KV_MLA_FMT`, `[1, num_layers, tokens, latent + rope]`. `"kv_shape"`: layer outermost,
 * `(num_layers, 2, tokens, heads, head_dim)`, the axis order of LMCache's `kv_shape` metadata. The
 * two differ only in the order of their first two axes, so for mla they are the same bytes.
 */
export type LmcacheMemoryFormat = "kv_2ltd" | "kv_shape";

/** Options of the LMCache converters. */
export interface LmcacheChunkOptions {
  /** Tokens per chunk; default 256. The cache's `tokenStart` must be a multiple of it. */
  readonly chunkSizeTokens?: number;
  /** Byte order of each chunk; default `"kv_2ltd"`, LMCache v1's. */
  readonly memoryFormat?: LmcacheMemoryFormat;
}

function shapeOf(descriptor: KvDescriptor, options: LmcacheChunkOptions) {
  assertValidDescriptor(descriptor);
  const chunk = options.chunkSizeTokens ?? LMCACHE_CHUNK_TOKENS;
  if (!Number.isSafeInteger(chunk) || chunk < 1) {
    throw new KvFormatError("OUT_OF_RANGE", `chunkSizeTokens ${chunk}, expected an integer >= 1`);
  }
  if (descriptor.tokenStart % chunk !== 0) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `tokenStart ${descriptor.tokenStart} is not a multiple of the ${chunk}-token chunk`,
    );
  }
  if (descriptor.scaleScheme !== "none") {
    throw new KvFormatError(
      "UNSUPPORTED_LAYOUT",
      `LMCache chunks carry no scales (scaleScheme ${descriptor.scaleScheme})`,
    );
  }
  const format = options.memoryFormat ?? "kv_2ltd";
  if (format !== "kv_2ltd" && format !== "kv_shape") {
    throw new KvFormatError(
      "UNSUPPORTED_LAYOUT",
      `memoryFormat ${JSON.stringify(format)}, expected "kv_2ltd" or "kv_shape"`,
    );
  }
  const parts: readonly KvPart[] = descriptor.attention.kind === "mla" ? ["latent"] : ["k", "v"];
  const heads = headCountOf(descriptor);
  const rowBytes = rowBytesOf(descriptor);
  const tokenBytes = heads * rowBytes;
  const layers = descriptor.numLayers;
  /** Byte offset, in a chunk of `n` tokens, of the first token of `part` (index `kv`) of `layer`. */
  const sliceAt = (layer: number, kv: number, n: number) =>
    (format === "kv_2ltd" ? kv * layers + layer : layer * parts.length + kv) * n * tokenBytes;
  return { chunk, parts, heads, rowBytes, tokenBytes, sliceAt };
}

/**
 * Cuts `cache` into LMCache chunks of `chunkSizeTokens` tokens (the last may be shorter), each a
 * new buffer in the cache's dtype, in `memoryFormat` order (default LMCache v1's `KV_2LTD`,
 * `[2, num_layers, tokens, heads * head_dim]`; see {@link LmcacheMemoryFormat}). Throws
 * OUT_OF_RANGE for a bad chunk size or a `tokenStart` off the chunk grid, UNSUPPORTED_LAYOUT for a
 * cache with scales (LMCache chunks carry none) or an unknown format.
 */
export function toLmcacheChunks(cache: KvCache, options: LmcacheChunkOptions = {}): Uint8Array[] {
  const d = cache.descriptor;
  const { chunk, parts, heads, rowBytes, tokenBytes, sliceAt } = shapeOf(d, options);
  const out: Uint8Array[] = [];
  const t = d.tokenCount;
  for (let start = 0; start < t; start += chunk) {
    const n = Math.min(chunk, t - start);
    const buffer = new Uint8Array(d.numLayers * parts.length * n * tokenBytes);
    for (let layer = 0; layer < d.numLayers; layer++) {
      parts.forEach((part, kv) => {
        const src = cache.part(layer, part);
        const base = sliceAt(layer, kv, n);
        if (d.layout === "nhd") {
          buffer.set(src.subarray(start * tokenBytes, (start + n) * tokenBytes), base);
        } else {
          for (let i = 0; i < n; i++) {
            for (let h = 0; h < heads; h++) {
              const from = (h * t + start + i) * rowBytes;
              buffer.set(src.subarray(from, from + rowBytes), base + (i * heads + h) * rowBytes);
            }
          }
        }
      });
    }
    out.push(buffer);
  }
  return out;
}

/**
 * Rebuilds a cache of `descriptor` from its LMCache chunks (inverse of {@link toLmcacheChunks}, with
 * the same options). Throws SHAPE_MISMATCH for a wrong number of chunks or a chunk of the wrong size.
 */
export function fromLmcacheChunks(
  chunks: readonly Uint8Array[],
  descriptor: KvDescriptor,
  options: LmcacheChunkOptions = {},
): KvCache {
  const { chunk, parts, heads, rowBytes, tokenBytes, sliceAt } = shapeOf(descriptor, options);
  const t = descriptor.tokenCount;
  const expectedChunks = Math.ceil(t / chunk);
  if (chunks.length !== expectedChunks) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `${chunks.length} chunks, expected ${expectedChunks} for ${t} tokens`,
    );
  }
  const cache = createKvCache(descriptor);
  chunks.forEach((buffer, c) => {
    const start = c * chunk;
    const n = Math.min(chunk, t - start);
    const expected = descriptor.numLayers * parts.length * n * tokenBytes;
    if (buffer.byteLength !== expected) {
      throw new KvFormatError(
        "SHAPE_MISMATCH",
        `chunk ${c} is ${buffer.byteLength} bytes, expected ${expected}`,
      );
    }
    for (let layer = 0; layer < descriptor.numLayers; layer++) {
      parts.forEach((part, kv) => {
        const dst = cache.part(layer, part);
        const base = sliceAt(layer, kv, n);
        if (descriptor.layout === "nhd") {
          dst.set(buffer.subarray(base, base + n * tokenBytes), start * tokenBytes);
        } else {
          for (let i = 0; i < n; i++) {
            for (let h = 0; h < heads; h++) {
              const from = base + (i * heads + h) * rowBytes;
              dst.set(buffer.subarray(from, from + rowBytes), (h * t + start + i) * rowBytes);
            }
          }
        }
      });
    }
  });
  return cache;
}
