import { Code, OpalError, Reason } from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import type { KvDescriptor } from "@opal/kv";
import { fromWireChunk, type opal } from "@opal/protocol";
import { readKvStream, type StreamHooks, type StreamProgress } from "../prefill/read-kv-stream";
import type { PushMessages } from "./read-push-header";

type Commit = opal.device.v1.PushKvCommit.$Properties;

/**
 * Reads the rest of a push (chunks, then the commit) through `readKvStream`, which checks every
 * chunk and, at the commit, the size and the whole-cache digest; resolves with the verified
 * outcome and the commit, or throws the first failure (PS-6 steps 5 and 6).
 */
export async function receivePush(
  descriptor: KvDescriptor,
  messages: PushMessages,
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
