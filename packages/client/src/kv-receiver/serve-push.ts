import { timingSafeEqual } from "node:crypto";
import { Code, OpalError, Reason } from "@opal/core";
import { cacheByteLength, layerByteLength, toHex } from "@opal/kv";
import type { opal, ServiceContext } from "@opal/protocol";
import type { KvSink } from "../sinks/kv-sink";
import { confirmRepeatPush } from "./confirm-repeat-push";
import type { ReceivedKv } from "./kv-receiver-options";
import { type PushHeader, type PushMessages, readPushHeader } from "./read-push-header";
import { receivePush } from "./receive-push";
import { type Admission, senderOf } from "./receiver-admission";
import type { ReceiverState } from "./receiver-state";
import { rememberTransfer } from "./remember-transfer";
import { withIdleTimeout } from "./with-idle-timeout";

type PushMessage = opal.device.v1.PushKvRequest;
type PushResponse = opal.device.v1.PushKvResponse.$Properties;

/**
 * One PushKv call (see `createKvReceiver`): checks the sender's token, admits it within its limits,
 * reads the header (idle means no KV bytes, PS-9), claims the transfer id (single-use, PS-13), then
 * confirms a repeat of a committed transfer or receives a new one into a fresh sink. A failure
 * aborts an opened sink; errors that are not `OpalError`s reach the sender as `OpalError.from` maps
 * them.
 */
export async function servePush<Receipt>(
  state: ReceiverState<Receipt>,
  requests: AsyncIterable<PushMessage>,
  call: ServiceContext,
): Promise<PushResponse> {
  let admitted: Admission | undefined;
  let claimed: string | undefined;
  try {
    const token = matchToken(state.tokens, call.metadata.get("authorization")[0]);
    if (token === undefined) {
      throw new OpalError(Code.UNAUTHENTICATED, "invalid or missing bearer token", {
        reason: Reason.TOKEN_INVALID,
      });
    }
    admitted = state.admission.admit(senderOf(token, call.peer));
    const messages = countingKvBytes(requests, state.idleTimeoutMs);
    const header = await readPushHeader(messages);
    const { transferId, descriptor } = header;
    if (state.receiving.has(transferId)) {
      throw new OpalError(
        Code.ABORTED,
        `transfer ${transferId} is being received by another push; a transfer id is single-use (PS-13)`,
        { reason: Reason.PUSH_REJECTED },
      );
    }
    state.receiving.add(transferId);
    claimed = transferId;
    const again = state.committed.get(transferId);
    if (again) {
      // A device may retry a push: the same cache, verified again, gets the earlier cache id.
      admitted.reserve(layerByteLength(descriptor));
      await confirmRepeatPush(again, descriptor, state.digests.get(transferId) ?? "", messages);
      return toResponse(again);
    }
    const received = await receiveNew(state, { header, messages, admitted });
    return toResponse(received);
  } catch (error) {
    throw OpalError.from(error);
  } finally {
    admitted?.release();
    if (claimed !== undefined) state.receiving.delete(claimed);
  }
}

/** What {@link receiveNew} receives. */
interface NewTransfer {
  readonly header: PushHeader;
  readonly messages: PushMessages;
  readonly admitted: Admission;
}

/**
 * Receives a transfer into a fresh sink, layer by layer, verified before the sink commits; the sink
 * is aborted when anything fails after it opened. Remembers the committed transfer.
 */
async function receiveNew<Receipt>(
  state: ReceiverState<Receipt>,
  { header, messages, admitted }: NewTransfer,
): Promise<ReceivedKv<Receipt>> {
  const { transferId, requestId, descriptor } = header;
  const sink: KvSink<Receipt> = state.options.createSink({
    transferId,
    requestId,
    descriptor,
  });
  // Reserved before any chunk is read: a layer being assembled, or the whole cache when the sink
  // keeps the layers' views.
  admitted.reserve(
    sink.keepsLayerViews ? cacheByteLength(descriptor) : layerByteLength(descriptor),
  );
  let opened = false;
  try {
    const { outcome, commit } = await receivePush(descriptor, messages, {
      onAccepted: async (d) => {
        opened = true;
        await sink.open(d);
      },
      onLayer: async (layer) => {
        await sink.writeLayer(layer);
      },
      reuseLayerBuffers: () => !sink.keepsLayerViews,
    });
    const receipt = await sink.commit(outcome.stats);
    const received: ReceivedKv<Receipt> = {
      transferId,
      requestId,
      descriptor,
      receipt,
      firstTokenId: commit.firstTokenId ?? 0,
      firstTokenLogprob: commit.firstTokenLogprob ?? 0,
      kvBytes: outcome.stats.kvTotalBytes,
      cacheId: `cache-${state.nextCacheId++}`,
    };
    rememberTransfer(state, received, toHex(outcome.stats.kvDigest));
    return received;
  } catch (error) {
    if (opened) await sink.abort(error);
    throw error;
  }
}

/**
 * The push's messages with the idle timeout, which only KV bytes extend (PS-9): the header, chunks
 * with data and the commit.
 */
function countingKvBytes(
  requests: AsyncIterable<PushMessage>,
  idleTimeoutMs: number,
): PushMessages {
  let headerSeen = false;
  return withIdleTimeout(requests[Symbol.asyncIterator](), idleTimeoutMs, (m) => {
    if (m.header && !headerSeen) {
      headerSeen = true;
      return true;
    }
    return (m.chunk?.data?.byteLength ?? 0) > 0 || Boolean(m.commit);
  });
}

/** The index of the token presented, -1 when none is required, undefined when refused. */
function matchToken(
  tokens: readonly Buffer[],
  header: string | Buffer | undefined,
): number | undefined {
  if (tokens.length === 0) return -1;
  const presented = typeof header === "string" ? header : "";
  const given = Buffer.from(/^Bearer (.+)$/i.exec(presented)?.[1] ?? "");
  let match: number | undefined;
  tokens.forEach((token, i) => {
    if (token.length === given.length && timingSafeEqual(token, given)) match = i;
  });
  return match;
}

function toResponse(received: ReceivedKv<unknown>): PushResponse {
  return {
    transferId: received.transferId,
    committed: true,
    cacheId: received.cacheId,
    receivedBytes: received.kvBytes,
  };
}
