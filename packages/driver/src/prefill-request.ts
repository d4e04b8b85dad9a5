import type { KvDtype, KvHeadRange, KvLayout, KvScaleScheme } from "@opal/kv";

/** The KV format a caller asks for. */
export interface KvFormat {
  readonly dtype: KvDtype;
  /** "none" for f32, f16, bf16. */
  readonly scaleScheme: KvScaleScheme;
  readonly layout: KvLayout;
  /** One of the device's `blockSizesTokens`. */
  readonly blockSizeTokens: number;
  /** Heads to produce (a tensor-parallel slice); absent means all heads. Ignored for MLA. */
  readonly headRange?: KvHeadRange;
}

/** Tokens whose KV the decoder already holds; set exactly one field. */
export interface DecoderPrefix {
  /** The decoder holds the first `numTokens` prompt tokens. */
  readonly numTokens?: number;
  /** The decoder holds the leading blocks with these chained block hashes. */
  readonly blockHashes?: readonly Uint8Array[];
}

/** Where a device pushes a cache (a KvReceiver service). */
export interface PushTarget {
  /** host:port. */
  readonly address: string;
  /** Bearer token presented to the receiver; never logged. */
  readonly authorizationToken?: string;
  /** The receiver's id of the transfer. */
  readonly transferId: string;
  readonly useTls?: boolean;
}

/** How the first generated token is chosen; greedy by default. */
export type Sampling =
  | { readonly mode: "greedy" }
  | {
      readonly mode: "seeded";
      readonly seed: number;
      readonly temperature: number;
      readonly topK?: number;
    };

/** A prefill request, as `PrefillRequest` on the wire. */
export interface PrefillRequest {
  /** Caller-chosen, 1-128 printable ASCII characters; makes retries idempotent. */
  readonly requestId: string;
  readonly modelId: string;
  /** The prompt token ids (1 .. maxPromptTokens, each < vocabSize). */
  readonly promptTokenIds: Uint32Array;
  readonly kvFormat: KvFormat;
  /** Isolates prefix-cache reuse; empty or absent means no salt. */
  readonly cacheSalt?: string;
  readonly decoderPrefix?: DecoderPrefix;
  /** Whole seconds to keep the cache for `fetchKv` after the stream; 0 (default) releases it at the end. */
  readonly retentionSeconds?: number;
  readonly pushTarget?: PushTarget;
  readonly sampling?: Sampling;
  /** Largest chunk data, in bytes (an integer); 0 or absent means the device's preferred size. */
  readonly maxChunkBytes?: number;
}
