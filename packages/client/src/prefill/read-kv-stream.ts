import { Code, OpalError, Reason } from "@opal/core";
import type { FetchEvent, KvPosition, PrefillEvent, PrefillStats } from "@opal/driver";
import {
  createKvAssembler,
  createKvDigest,
  type KvAssembler,
  type KvDescriptor,
  type KvDigest,
  type KvLayerParts,
  toHex,
} from "@opal/kv";

/** What one attempt has verified so far; carried across a resume. */
export interface StreamProgress {
  readonly attemptStartedAt: number;
  kvHandle?: string;
  descriptor?: KvDescriptor;
  assembler?: KvAssembler;
  digest?: KvDigest;
  /** Where a resume must start: the first byte not yet verified. */
  position?: KvPosition;
  firstChunkAt?: number;
  lastChunkAt?: number;
  /** Chunk bytes verified so far. */
  bytes?: number;
}

/** How a stream ended: a verified complete cache, or a break to resume or retry from. */
export type StreamOutcome =
  | { readonly kind: "completed"; readonly stats: PrefillStats; readonly descriptor: KvDescriptor }
  | { readonly kind: "broken"; readonly error: OpalError };

/** Callbacks of {@link readKvStream}; the stream waits for each. */
export interface StreamHooks {
  onAccepted(descriptor: KvDescriptor): Promise<void>;
  onLayer(layer: KvLayerParts, descriptor: KvDescriptor): Promise<void>;
  /**
   * True when nobody keeps a layer's views past `onLayer` (the sink copies or writes them): the
   * assembler then reuses one layer's buffers for the next, bounding memory to about one layer.
   */
  readonly reuseLayerBuffers?: () => boolean;
  /**
   * True when the chunk buffers belong to the reader (`PrefillDriver.yieldsOwnedChunks`): a chunk
   * covering a whole part may then become the part's view instead of being copied.
   */
  readonly ownsChunks?: boolean;
  /**
   * Checks a new stream's descriptor against what was asked for (PF-12); the error it returns
   * breaks the stream before `onAccepted` and any chunk. Not called for a resumed stream, whose
   * descriptor must equal the first one.
   */
  readonly checkDescriptor?: (descriptor: KvDescriptor) => OpalError | undefined;
}

/**
 * Reads a prefill or fetch stream into `progress`: checks every chunk (CRC32C, order, size) through
 * the assembler, digests each completed layer, and hands it to `hooks.onLayer`. Returns
 * `completed` only when the cache is complete and its digest and size match the device's; returns
 * `broken` for a failure mid-stream (the caller may resume from `progress.position`). A fetch must
 * describe the same cache as the prefill it resumes. A hook's failure (the sink's) and the
 * caller's abort are not breaks of the stream: they are thrown, since resuming past a layer the
 * sink failed to take would commit a cache without it.
 */
export async function readKvStream(
  events: AsyncIterable<PrefillEvent | FetchEvent>,
  progress: StreamProgress,
  hooks: StreamHooks,
): Promise<StreamOutcome> {
  // Set while a hook runs: what it throws is the caller's failure, not the stream's.
  let inHook = false;
  const hook = async (run: () => Promise<void>) => {
    inHook = true;
    await run();
    inHook = false;
  };
  try {
    for await (const event of events) {
      switch (event.type) {
        case "accepted":
          if (progress.descriptor) {
            if (JSON.stringify(event.descriptor) !== JSON.stringify(progress.descriptor)) {
              throw new OpalError(
                Code.DATA_LOSS,
                "the resumed stream describes a different cache",
                {
                  reason: Reason.DESCRIPTOR_MISMATCH,
                },
              );
            }
          } else {
            const refused = hooks.checkDescriptor?.(event.descriptor);
            if (refused) throw refused;
            progress.descriptor = event.descriptor;
            const reuse = hooks.reuseLayerBuffers?.() ?? false;
            progress.assembler = createKvAssembler(event.descriptor, {
              reuseBuffers: reuse,
              // A chunk covering a whole part is kept where it arrived when the layer is not
              // reused and the chunk buffers are ours, if aligned (PF-48 padding makes them so).
              adoptWholeParts: !reuse && (hooks.ownsChunks ?? false),
              adoptAlignmentBytes: 8,
            });
            progress.digest = createKvDigest();
            progress.position = { layer: 0, offsetBytes: 0 };
            if ("kvHandle" in event) progress.kvHandle = event.kvHandle;
            await hook(() => hooks.onAccepted(event.descriptor));
          }
          break;
        case "chunk": {
          const { assembler, descriptor, digest } = progress;
          if (!assembler || !descriptor || !digest)
            throw violation("a chunk arrived before `accepted`");
          const now = performance.now();
          progress.firstChunkAt ??= now;
          progress.lastChunkAt = now;
          const layer = assembler.accept(event.chunk);
          // Chunks are accepted only in canonical order, so the digest can follow chunk by chunk.
          digest.update(event.chunk.data);
          progress.bytes = (progress.bytes ?? 0) + event.chunk.data.byteLength;
          progress.position = assembler.next ?? progress.position;
          if (layer) await hook(() => hooks.onLayer(layer, descriptor));
          break;
        }
        case "completed": {
          const { assembler, descriptor, digest } = progress;
          if (!assembler || !descriptor || !digest)
            throw violation("`completed` arrived before `accepted`");
          if (!assembler.complete) {
            const at = assembler.next;
            throw new OpalError(
              Code.DATA_LOSS,
              `stream completed at layer ${at?.layer} part ${at?.part} offset ${at?.offsetBytes}, before the cache was complete`,
              { reason: Reason.STREAM_INCOMPLETE },
            );
          }
          const stats = "stats" in event ? event.stats : event.prefill;
          const theirs = "stats" in event ? event.stats.kvDigest : event.kvDigest;
          const theirBytes = "stats" in event ? event.stats.kvTotalBytes : event.kvTotalBytes;
          const ours = digest.digest();
          const bytes = progress.bytes ?? 0;
          if (toHex(ours) !== toHex(theirs) || bytes !== theirBytes) {
            throw new OpalError(
              Code.DATA_LOSS,
              `cache digest ${toHex(ours)} (${bytes} bytes) does not match the device's ${toHex(theirs)} (${theirBytes} bytes)`,
              { reason: Reason.CHECKSUM_MISMATCH },
            );
          }
          if (!stats) throw violation("the device's fetch did not return the prefill's result");
          return { kind: "completed", stats, descriptor };
        }
        default:
          break;
      }
    }
    return {
      kind: "broken",
      error: new OpalError(Code.DATA_LOSS, "the device's stream ended without `completed`", {
        reason: Reason.STREAM_INCOMPLETE,
      }),
    };
  } catch (error) {
    if (inHook) throw OpalError.from(error);
    let opal = OpalError.from(error);
    if (STREAM_ORDER_REASONS.has(opal.reason)) {
      // A gap, overlap or reorder is a broken stream (DATA_LOSS, resumable), not a bad request.
      opal = new OpalError(Code.DATA_LOSS, opal.rawMessage, {
        reason: Reason.STREAM_INCOMPLETE,
        cause: opal,
      });
    }
    // Only failures of the stream itself can be resumed; the caller's abort propagates as is.
    if (opal.code === Code.CANCELLED || opal.code === Code.DEADLINE_EXCEEDED) throw opal;
    return { kind: "broken", error: opal };
  }
}

/** The `.okv`/assembler reasons that mean the stream broke its canonical order or sizes. */
const STREAM_ORDER_REASONS = new Set([
  "OUT_OF_ORDER",
  "INVALID_OFFSETS",
  "LENGTH_LIMIT",
  "OUT_OF_RANGE",
  "TRUNCATED",
]);

function violation(message: string): OpalError {
  return new OpalError(Code.DATA_LOSS, `protocol violation: ${message}`, {
    reason: Reason.STREAM_INCOMPLETE,
  });
}
