import { Code, OpalError, Reason } from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import { type KvDescriptor, toHex } from "@opal/kv";
import { fromWireChunk, fromWireDescriptor, type opal } from "@opal/protocol";
import { readKvStream, type StreamHooks, type StreamProgress } from "../prefill/read-kv-stream";
import type { ReceivedKv } from "./kv-receiver-options";

// The steps of one PushKv call after admission (docs/protocol/push.md PS-6, PS-13).

type PushMessage = InstanceType<typeof opal.device.v1.PushKvRequest>;
/** A push call's messages (with its idle timeout). */
export type Messages = { next(): Promise<IteratorResult<PushMessage>> };
type Commit = opal.device.v1.PushKvCommit.$Properties;

/** The first message: a header with a transfer id and a valid descriptor (PS-6 step 2). */
export async function readHeader(
  messages: Messages,
): Promise<{ header: opal.device.v1.PushKvHeader.$Properties; descriptor: KvDescriptor }> {
  const first = await messages.next();
  const header = first.done ? undefined : first.value.header;
  if (!header?.transferId || !header.descriptor) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      "the first PushKv message must be a header with transfer_id and descriptor",
      {
        reason: Reason.INVALID_FIELD,
        fieldViolations: [{ field: "header", description: "required as the first message" }],
      },
    );
  }
  return { header, descriptor: fromWireDescriptor(header.descriptor, "header.descriptor") };
}

/**
 * Reads the rest of a push (chunks, then the commit) through `readKvStream`, which checks every
 * chunk and, at the commit, the size and the whole-cache digest; resolves with the verified
 * outcome and the commit, or throws the first failure (PS-6 steps 5 and 6).
 */
export async function receive(
  descriptor: KvDescriptor,
  messages: Messages,
  hooks: Pick<StreamHooks, "onAccepted" | "onLayer" | "reuseLayerBuffers">,
): Promise<{ outcome: { stats: PrefillStats }; commit: Commit }> {
  let commit: Commit | undefined;
  // The push as the event stream readKvStream checks: accepted, chunks, completed.
  async function* events() {
    yield {
      type: "accepted" as const,
      descriptor,
      kvHandle: "",
      leaseExpiryUnixMs: 0,
      queueTimeUs: 0,
    };
    for (;;) {
      const next = await messages.next();
      if (next.done) return;
      if (next.value.chunk)
        yield { type: "chunk" as const, chunk: fromWireChunk(next.value.chunk) };
      else if (next.value.commit) {
        const c = next.value.commit;
        commit = c;
        const stats: PrefillStats = {
          ...{ promptTokens: 0, prefixCacheHitTokens: 0, decoderPrefixTokens: 0, deviceTimeUs: 0 },
          ...{ queueTimeUs: 0, energyJoules: 0, leaseExpiryUnixMs: 0, timeToFirstChunkUs: 0 },
          firstTokenId: c.firstTokenId ?? 0,
          firstTokenLogprob: c.firstTokenLogprob ?? 0,
          kvTotalBytes: Number(c.kvTotalBytes ?? 0),
          kvDigest: c.kvDigest ?? new Uint8Array(),
        };
        yield { type: "completed" as const, stats };
        return;
      }
    }
  }
  const progress: StreamProgress = { attemptStartedAt: performance.now() };
  // Chunks are this server's freshly received messages.
  const outcome = await readKvStream(events(), progress, { ...hooks, ownsChunks: true });
  if (outcome.kind === "broken") throw outcome.error;
  if (!commit)
    throw new OpalError(Code.DATA_LOSS, "the push ended without a commit", {
      reason: Reason.STREAM_INCOMPLETE,
    });
  return { outcome, commit };
}

/**
 * A push under the id of a committed transfer (PS-13): accepted only when it carries the same
 * cache, i.e. the same descriptor and, once its chunks and commit verified, the same digest.
 * Anything else fails ABORTED PUSH_REJECTED; a push that is not a complete, verified cache fails
 * as any push would (no chunks: DATA_LOSS STREAM_INCOMPLETE).
 */
export async function confirmRepeat(
  earlier: ReceivedKv<unknown>,
  descriptor: KvDescriptor,
  digest: string,
  messages: Messages,
): Promise<void> {
  const refused = () =>
    new OpalError(
      Code.ABORTED,
      `transfer ${earlier.transferId} was already committed with another cache`,
      { reason: Reason.PUSH_REJECTED },
    );
  if (JSON.stringify(earlier.descriptor) !== JSON.stringify(descriptor)) throw refused();
  const { outcome } = await receive(descriptor, messages, {
    onAccepted: async () => {},
    onLayer: async () => {},
    reuseLayerBuffers: () => true,
  });
  if (toHex(outcome.stats.kvDigest) !== digest) throw refused();
}
