import {
  type KvCache,
  type KvDescriptor,
  LMCACHE_CHUNK_TOKENS,
  type LmcacheMemoryFormat,
  toLmcacheChunks,
} from "@opal/kv";
import { invalidOption } from "../options/invalid-option";
import { createGuardedSink } from "./create-guarded-sink";
import type { KvSink } from "./kv-sink";
import { createMemorySink } from "./memory-sink";
import { descriptorMismatch } from "./sink-errors";

/** Options of {@link createLmcacheSink}. */
export interface LmcacheSinkOptions {
  /** Tokens per chunk (LMCache's `chunk_size`); default 256. */
  readonly chunkSizeTokens?: number;
  /**
   * Byte order of each chunk: `"kv_2ltd"` (default), LMCache v1's `KV_2LTD` memory objects, or
   * `"kv_shape"`, layer outermost (see `LmcacheMemoryFormat` in `@opal/kv`).
   */
  readonly memoryFormat?: LmcacheMemoryFormat;
}

/** What {@link createLmcacheSink} committed. */
export interface LmcacheReceipt {
  /**
   * The chunks in token order, each a new buffer in the cache's dtype and `memoryFormat` order
   * (`kv_2ltd`: `[2, num_layers, tokens, heads * head_dim]`, mla `[1, num_layers, tokens, latent +
   * rope]`); every chunk holds `chunkSizeTokens` tokens except possibly the last.
   */
  readonly chunks: readonly Uint8Array[];
  readonly chunkSizeTokens: number;
  readonly memoryFormat: LmcacheMemoryFormat;
  /** Absolute position of the first token of chunk 0 (the cache's `tokenStart`). */
  readonly tokenStart: number;
  /** The cache's descriptor (heads, dtype, fingerprint for LMCache's key). */
  readonly descriptor: KvDescriptor;
}

/**
 * A sink that hands the cache over as LMCache chunks (`toLmcacheChunks`). A chunk holds every layer
 * of its tokens, so this sink keeps each layer as it arrives (like the memory sink) and builds the
 * chunks in `commit`: memory is the whole cache, then the chunks (about twice the cache at commit).
 *
 * `open` rejects with FAILED_PRECONDITION DESCRIPTOR_MISMATCH when the cache has scales (LMCache
 * chunks carry none) or its `tokenStart` is not a multiple of the chunk size; a bad
 * `chunkSizeTokens` throws INVALID_ARGUMENT INVALID_FIELD here. `abort` drops the buffered layers.
 */
export function createLmcacheSink(options: LmcacheSinkOptions = {}): KvSink<LmcacheReceipt> {
  const chunkSizeTokens = options.chunkSizeTokens ?? LMCACHE_CHUNK_TOKENS;
  if (!Number.isSafeInteger(chunkSizeTokens) || chunkSizeTokens < 1)
    throw invalidOption("chunkSizeTokens", "an integer >= 1", chunkSizeTokens);
  const memoryFormat = options.memoryFormat ?? "kv_2ltd";
  if (memoryFormat !== "kv_2ltd" && memoryFormat !== "kv_shape")
    throw invalidOption("memoryFormat", '"kv_2ltd" or "kv_shape"', memoryFormat);
  const memory = createMemorySink();
  return createGuardedSink<LmcacheReceipt>({
    keepsLayerViews: true,
    open(d) {
      if (d.scaleScheme !== "none")
        throw descriptorMismatch(
          "scaleScheme",
          "LMCache chunks carry no scales",
          `the cache has ${d.scaleScheme} scales`,
        );
      if (d.tokenStart % chunkSizeTokens !== 0)
        throw descriptorMismatch(
          "tokenStart",
          `LMCache chunks start at multiples of ${chunkSizeTokens} tokens`,
          `the cache starts at token ${d.tokenStart}`,
        );
      return memory.open(d);
    },
    writeLayer(layer) {
      return memory.writeLayer(layer);
    },
    async commit(stats) {
      const cache: KvCache = await memory.commit(stats);
      return {
        chunks: toLmcacheChunks(cache, { chunkSizeTokens, memoryFormat }),
        chunkSizeTokens,
        memoryFormat,
        tokenStart: cache.descriptor.tokenStart,
        descriptor: cache.descriptor,
      };
    },
    discard(reason) {
      return memory.abort(reason);
    },
  });
}
