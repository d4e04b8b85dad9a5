import { assertValidDescriptor, headCountOf, type KvDescriptor, type KvPart } from "./descriptor";
import { createKvCache, type KvCache } from "./kv-cache";
import { KvFormatError } from "./kv-format-error";
import { rowBytesOf } from "./to-kv-layout";

/** LMCache's default chunk size: 256 tokens. */
export const LMCACHE_CHUNK_TOKENS = 256;

/** Options of the LMCache converters. */
export interface LmcacheChunkOptions {
  /** Tokens per chunk; default 256. The cache's `tokenStart` must be a multiple of it. */
  readonly chunkSizeTokens?: number;
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
  const parts: readonly KvPart[] = descriptor.attention.kind === "mla" ? ["latent"] : ["k", "v"];
  const heads = headCountOf(descriptor);
  const rowBytes = rowBytesOf(descriptor);
  return { chunk, parts, heads, rowBytes, tokenBytes: heads * rowBytes };
}

/**
 * Cuts `cache` into LMCache chunks of `chunkSizeTokens` tokens (the last may be shorter), each a
 * new buffer of shape `(num_layers, 2, tokens, heads, head_dim)` (mla: `(num_layers, 1, tokens, 1,
 * latent + rope)`), in the cache's dtype: the axis order of LMCache's `kv_shape` metadata and of
 * its v0 KV blobs. LMCache v1 memory objects in `MemoryFormat.KV_2LTD` put K/V outermost,
 * `[2, num_layers, tokens, heads * head_dim]` (`KV_MLA_FMT`: `[1, num_layers, tokens, 576]`), so
 * their bytes are these with the first two axes swapped (the same bytes for mla).
 */
export function toLmcacheChunks(cache: KvCache, options: LmcacheChunkOptions = {}): Uint8Array[] {
  const d = cache.descriptor;
  const { chunk, parts, heads, rowBytes, tokenBytes } = shapeOf(d, options);
  const out: Uint8Array[] = [];
  const t = d.tokenCount;
  for (let start = 0; start < t; start += chunk) {
    const n = Math.min(chunk, t - start);
    const buffer = new Uint8Array(d.numLayers * parts.length * n * tokenBytes);
    for (let layer = 0; layer < d.numLayers; layer++) {
      parts.forEach((part, kv) => {
        const src = cache.part(layer, part);
        const base = (layer * parts.length + kv) * n * tokenBytes;
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

/** Rebuilds a cache of `descriptor` from its LMCache chunks (inverse of {@link toLmcacheChunks}). */
export function fromLmcacheChunks(
  chunks: readonly Uint8Array[],
  descriptor: KvDescriptor,
  options: LmcacheChunkOptions = {},
): KvCache {
  const { chunk, parts, heads, rowBytes, tokenBytes } = shapeOf(descriptor, options);
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
        const base = (layer * parts.length + kv) * n * tokenBytes;
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
