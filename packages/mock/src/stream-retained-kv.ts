import { throwIfAborted } from "@opal/core";
import {
  type DeviceCapabilities,
  type FetchEvent,
  type FetchKvRequest,
  negotiateChunkBytes,
} from "@opal/driver";
import { cacheByteLength, createKvChunker, partsOf } from "@opal/kv";
import { resumePosition, sliceChunk } from "./resume-position";
import type { RetainedKv } from "./retention-store";

/**
 * FetchKv on a retained cache: "accepted", the chunks from `request.resumeFrom` on (at most
 * `request.maxChunkBytes`, default the preferred size), then "completed" with the prefill's
 * statistics. INVALID_ARGUMENT for a chunk size outside `negotiateChunkBytes`' range, OUT_OF_RANGE
 * RESUME_POSITION_INVALID for a position outside the cache; the abort error once `signal` aborts.
 */
export async function* streamRetainedKv(
  entry: RetainedKv,
  options: {
    readonly request: FetchKvRequest;
    readonly capabilities: DeviceCapabilities;
    readonly signal: AbortSignal;
  },
): AsyncGenerator<FetchEvent> {
  const { request, capabilities, signal } = options;
  const descriptor = entry.cache.descriptor;
  const chunkBytes = negotiateChunkBytes(request.maxChunkBytes, capabilities);
  const start = resumePosition(descriptor, request.resumeFrom);
  yield { type: "accepted", descriptor, leaseExpiryUnixMs: entry.leaseExpiryUnixMs };
  const chunker = createKvChunker(descriptor, { maxChunkBytes: chunkBytes });
  const parts = partsOf(descriptor);
  for (let layer = start.layer; layer < descriptor.numLayers; layer++) {
    for (const [index, part] of parts.entries()) {
      if (layer === start.layer && index < start.partIndex) continue;
      const data = entry.cache.part(layer, part);
      const from = layer === start.layer && index === start.partIndex ? start.offsetBytes : 0;
      for (const chunk of chunker.chunkPart(layer, part, data)) {
        if (chunk.offsetBytes + chunk.data.byteLength <= from) continue;
        throwIfAborted(signal);
        yield { type: "chunk", chunk: chunk.offsetBytes >= from ? chunk : sliceChunk(chunk, from) };
      }
    }
  }
  yield {
    type: "completed",
    kvTotalBytes: cacheByteLength(descriptor),
    kvDigest: entry.digest,
    ...(entry.stats ? { prefill: entry.stats } : {}),
  };
}
