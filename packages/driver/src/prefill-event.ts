import type { KvChunk, KvDescriptor, KvPart } from "@opal/kv";

/** Statistics of a finished prefill (`PrefillCompleted`). */
export interface PrefillStats {
  readonly promptTokens: number;
  /** Tokens whose KV came from the device's prefix cache. */
  readonly prefixCacheHitTokens: number;
  /** Tokens not sent because the decoder held them. */
  readonly decoderPrefixTokens: number;
  readonly firstTokenId: number;
  /** Natural log of the first token's probability. */
  readonly firstTokenLogprob: number;
  readonly kvTotalBytes: number;
  /** XXH3-128 over the cache bytes in canonical order (16 bytes, `createKvDigest`). */
  readonly kvDigest: Uint8Array;
  /** Device compute time, in microseconds. */
  readonly deviceTimeUs: number;
  /** Time spent waiting for a slot, in microseconds. */
  readonly queueTimeUs: number;
  readonly energyJoules: number;
  /** Retention lease expiry in ms since the Unix epoch; 0 without retention. */
  readonly leaseExpiryUnixMs: number;
  /** Time from accepting the request to the first chunk, in microseconds. */
  readonly timeToFirstChunkUs: number;
  /** The receiver's acknowledgement when the cache was pushed. */
  readonly pushReceipt?: { readonly committed: boolean; readonly cacheId: string };
}

/**
 * Events of a prefill, in order: one "accepted", then "chunk"s in canonical order (or
 * "push_progress" when pushing), then one "completed". Any other end is a failure.
 */
export type PrefillEvent =
  | {
      readonly type: "accepted";
      /** Opaque, unguessable, tenant-scoped handle for `fetchKv`/`releaseKv`. */
      readonly kvHandle: string;
      readonly descriptor: KvDescriptor;
      /** Lease expiry in ms since the Unix epoch; 0 without retention. */
      readonly leaseExpiryUnixMs: number;
      readonly queueTimeUs: number;
    }
  | { readonly type: "chunk"; readonly chunk: KvChunk }
  | { readonly type: "push_progress"; readonly bytesPushed: number; readonly layersPushed: number }
  | { readonly type: "completed"; readonly stats: PrefillStats };

/** A position in the canonical chunk order. */
export interface KvPosition {
  readonly layer: number;
  /** Absent means the first part of the layer. */
  readonly part?: KvPart;
  readonly offsetBytes: number;
}

/** What `fetchKv` re-streams. */
export interface FetchKvRequest {
  readonly kvHandle: string;
  /** Absent means the start of the cache. */
  readonly resumeFrom?: KvPosition;
  /** Largest chunk data, in bytes; 0 or absent means the device's preferred size. */
  readonly maxChunkBytes?: number;
}

/** Events of a fetch: "accepted", chunks from the resume position, "completed" (whole-cache digest). */
export type FetchEvent =
  | {
      readonly type: "accepted";
      readonly descriptor: KvDescriptor;
      readonly leaseExpiryUnixMs: number;
    }
  | { readonly type: "chunk"; readonly chunk: KvChunk }
  | {
      readonly type: "completed";
      readonly kvTotalBytes: number;
      readonly kvDigest: Uint8Array;
      /** The original prefill's `completed` statistics (first token, counts), when the device has them. */
      readonly prefill?: PrefillStats;
    };
