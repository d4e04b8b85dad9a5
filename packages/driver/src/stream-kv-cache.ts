import { throwIfAborted } from "@opal/core";
import { cacheByteLength, createKvChunker, digestKvCache, type KvCache } from "@opal/kv";
import type { PrefillStats } from "./gen/messages";
import type { PrefillEvent } from "./prefill-event";

/** Options of {@link streamKvCache}. */
export interface StreamKvCacheOptions {
  /** The handle announced in `accepted`. */
  readonly kvHandle: string;
  /** Largest chunk data, in bytes (from `validatePrefillRequest`). */
  readonly chunkBytes: number;
  /** Checked before each chunk; an abort ends the stream with its reason. */
  readonly signal?: AbortSignal;
  /** Lease expiry in ms since the Unix epoch; default 0 (no retention). */
  readonly leaseExpiryUnixMs?: number;
  /** Fields of `completed` the device measured; the size and digest are computed here. */
  readonly stats: Omit<
    PrefillStats,
    "kvTotalBytes" | "kvDigest" | "leaseExpiryUnixMs" | "timeToFirstChunkUs" | "queueTimeUs"
  > &
    Partial<Pick<PrefillStats, "queueTimeUs" | "timeToFirstChunkUs">>;
}

/**
 * The protocol's event sequence for a computed cache: `accepted`, every chunk in canonical order
 * (views of `cache`, no copy), and `completed` with the cache's size and XXH3-128 digest. For
 * devices that compute a whole cache before sending; a device that streams while computing yields
 * the same events itself, layer by layer.
 */
export async function* streamKvCache(
  cache: KvCache,
  options: StreamKvCacheOptions,
): AsyncGenerator<PrefillEvent> {
  const { descriptor } = cache;
  const leaseExpiryUnixMs = options.leaseExpiryUnixMs ?? 0;
  const queueTimeUs = options.stats.queueTimeUs ?? 0;
  yield {
    type: "accepted",
    kvHandle: options.kvHandle,
    descriptor,
    leaseExpiryUnixMs,
    queueTimeUs,
  };
  const chunker = createKvChunker(descriptor, { maxChunkBytes: options.chunkBytes });
  for (let layer = 0; layer < descriptor.numLayers; layer++) {
    for (const chunk of chunker.chunkLayer(cache.layer(layer))) {
      throwIfAborted(options.signal);
      yield { type: "chunk", chunk };
    }
  }
  yield {
    type: "completed",
    stats: {
      timeToFirstChunkUs: 0,
      ...options.stats,
      queueTimeUs,
      kvTotalBytes: cacheByteLength(descriptor),
      kvDigest: digestKvCache(cache),
      leaseExpiryUnixMs,
    },
  };
}
