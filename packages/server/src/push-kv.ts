import { Code, createChannel, invalidField, OpalError, Reason } from "@opal/core";
import type { PrefillEvent, PushTarget } from "@opal/driver";
import { type KvDescriptor, partByteLength, partsOf } from "@opal/kv";
import {
  createGrpcChannel,
  type GrpcChannel,
  peerStatusOf,
  KvReceiverServiceDefinition as R,
  toWireChunk,
  toWireDescriptor,
} from "@opal/protocol";

type PushMessage = Parameters<typeof R.pushKv.requestSerialize>[0];

/**
 * Pushes a prefill's cache to a KvReceiver service: turns the driver's events into a PushKv client
 * stream (header, chunks, commit) and the caller's events into `accepted`, `push_progress` after
 * each layer, and `completed` carrying the receiver's receipt. Honours the receiver's flow control
 * (each message waits for its place in the client stream's one-message queue, which the adapter
 * empties as the receiver's `drain` allows, at most `stallTimeoutMs`: a receiver that reads nothing
 * for that long fails the push UNAVAILABLE PUSH_TARGET_UNREACHABLE). Receiver failures map to UNAVAILABLE
 * PUSH_TARGET_UNREACHABLE, ABORTED PUSH_REJECTED or the receiver's own DESCRIPTOR_MISMATCH.
 */
export async function* pushKv(
  target: PushTarget,
  requestId: string,
  events: AsyncIterable<PrefillEvent>,
  signal: AbortSignal,
  stallTimeoutMs: number,
): AsyncGenerator<PrefillEvent> {
  const channel = connectReceiver(target);
  // The PushKv call reads its messages from here as the receiver takes them (one held ahead).
  const messages = createChannel<PushMessage>({ capacity: 1 });
  let response: Promise<{ committed: boolean; cacheId: string }> | undefined;
  try {
    let bytesPushed = 0;
    let layersPushed = 0;
    let descriptor: KvDescriptor | undefined;
    for await (const event of events) {
      if (event.type === "accepted") {
        descriptor = event.descriptor;
        response = channel.clientStream(R.pushKv, messages, { signal }).then(
          (value) => ({ committed: value.committed, cacheId: value.cacheId }),
          (error: unknown) => {
            throw peerStatusOf(error) ? receiverError(error as OpalError) : error;
          },
        );
        response.catch(() => {});
        await write({
          header: {
            transferId: target.transferId,
            requestId,
            descriptor: toWireDescriptor(event.descriptor),
          },
        });
        yield event;
      } else if (event.type === "chunk") {
        await write({ chunk: toWireChunk(event.chunk) });
        bytesPushed += event.chunk.data.byteLength;
        const { part, offsetBytes, data } = event.chunk;
        const lastPart = partsOf(descriptor!).at(-1);
        if (
          part === lastPart &&
          offsetBytes + data.byteLength === partByteLength(descriptor!, part)
        ) {
          layersPushed++;
          yield { type: "push_progress", bytesPushed, layersPushed };
        }
      } else if (event.type === "completed") {
        const { stats } = event;
        await write({
          commit: {
            kvTotalBytes: stats.kvTotalBytes,
            kvDigest: stats.kvDigest,
            firstTokenId: stats.firstTokenId,
            firstTokenLogprob: stats.firstTokenLogprob,
          },
        });
        messages.close();
        const receipt = await response!;
        if (!receipt.committed) {
          throw new OpalError(Code.ABORTED, "the receiver did not commit the cache", {
            reason: Reason.PUSH_REJECTED,
          });
        }
        yield { type: "completed", stats: { ...stats, pushReceipt: receipt } };
      }
    }
  } finally {
    // A push that did not commit is cancelled (closing the channel ends its call), so the
    // receiver discards what it got.
    messages.close();
    channel.close();
  }

  async function write(message: PushMessage): Promise<void> {
    if (!response) throw new OpalError(Code.INTERNAL, "push stream not open");
    // A receiver that stops reading would hold the device's slot: it gets the stall timeout.
    const stall = new AbortController();
    const timer = setTimeout(() => stall.abort(pushStalled()), stallTimeoutMs);
    timer.unref();
    const sent = messages.send(message, AbortSignal.any([signal, stall.signal]));
    // The receiver's answer may end the push first; the send then settles unobserved.
    sent.catch(() => {});
    try {
      await Promise.race([response, sent]);
    } catch (error) {
      // The call ended under the send (the channel closed): the receiver's answer says why.
      if (!signal.aborted && !stall.signal.aborted) await response;
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  function pushStalled(): OpalError {
    return new OpalError(
      Code.UNAVAILABLE,
      `push target stalled: it read nothing for ${stallTimeoutMs} ms`,
      { reason: Reason.PUSH_TARGET_UNREACHABLE, retryDelayMs: 100 },
    );
  }
}

/** A channel to the receiver; an address grpc-js cannot parse is INVALID_ARGUMENT INVALID_FIELD. */
function connectReceiver(target: PushTarget): GrpcChannel {
  try {
    return createGrpcChannel(target.address, {
      ...(target.useTls ? { tls: {} } : {}),
      ...(target.authorizationToken ? { token: target.authorizationToken } : {}),
      channel: { maxSendMessageBytes: 64 * 1024 * 1024, flowControlWindowBytes: 16 * 1024 * 1024 },
    });
  } catch {
    throw invalidField(
      "push_target.address",
      `expected a gRPC target such as host:port, got ${JSON.stringify(target.address)}`,
    );
  }
}

/**
 * The prefill's error for a failed push (push.md "Failure mapping"). A failure that carries no
 * OPAL ErrorInfo did not come from a KvReceiver: a closed port, an open port that does not speak
 * HTTP/2 or gRPC, another service. All of them are one error with one message, so that push
 * failures do not tell callers what listens at an address (PS-17); what happened stays in `cause`.
 */
function receiverError(opal: OpalError): OpalError {
  if (!opal.reason) {
    return new OpalError(Code.UNAVAILABLE, "push target unreachable, or not an OPAL KvReceiver", {
      reason: Reason.PUSH_TARGET_UNREACHABLE,
      retryDelayMs: 100,
      cause: opal,
    });
  }
  if (opal.code === Code.UNAVAILABLE || opal.code === Code.DEADLINE_EXCEEDED) {
    return new OpalError(Code.UNAVAILABLE, `push target unreachable: ${opal.rawMessage}`, {
      reason: Reason.PUSH_TARGET_UNREACHABLE,
      retryDelayMs: 100,
      cause: opal,
    });
  }
  if (opal.code === Code.FAILED_PRECONDITION || opal.reason === Reason.DESCRIPTOR_MISMATCH)
    return opal;
  return new OpalError(Code.ABORTED, `push rejected by the receiver: ${opal.message}`, {
    reason: Reason.PUSH_REJECTED,
    cause: opal,
  });
}
