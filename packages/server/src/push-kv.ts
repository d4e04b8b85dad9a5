import { Client, type ClientWritableStream, credentials, Metadata } from "@grpc/grpc-js";
import { Code, invalidField, OpalError, Reason } from "@opal/core";
import type { PrefillEvent, PushTarget } from "@opal/driver";
import { type KvDescriptor, partByteLength, partsOf } from "@opal/kv";
import {
  fromGrpcStatus,
  KvReceiverServiceDefinition as R,
  toWireChunk,
  toWireDescriptor,
  waitForDrain,
} from "@opal/protocol";

type PushMessage = Parameters<typeof R.pushKv.requestSerialize>[0];

/**
 * Pushes a prefill's cache to a KvReceiver service: turns the driver's events into a PushKv client
 * stream (header, chunks, commit) and the caller's events into `accepted`, `push_progress` after
 * each layer, and `completed` carrying the receiver's receipt. Honours the receiver's flow control
 * (waits for `drain`, at most `stallTimeoutMs`: a receiver that reads nothing for that long fails
 * the push UNAVAILABLE PUSH_TARGET_UNREACHABLE). Receiver failures map to UNAVAILABLE
 * PUSH_TARGET_UNREACHABLE, ABORTED PUSH_REJECTED or the receiver's own DESCRIPTOR_MISMATCH.
 */
export async function* pushKv(
  target: PushTarget,
  requestId: string,
  events: AsyncIterable<PrefillEvent>,
  signal: AbortSignal,
  stallTimeoutMs: number,
): AsyncGenerator<PrefillEvent> {
  const client = connectReceiver(target);
  const metadata = new Metadata();
  if (target.authorizationToken)
    metadata.set("authorization", `Bearer ${target.authorizationToken}`);
  let response: Promise<{ committed: boolean; cacheId: string }> | undefined;
  let stream: ClientWritableStream<PushMessage> | undefined;
  const onAbort = () => stream?.cancel();
  signal.addEventListener("abort", onAbort, { once: true });
  let committed = false;
  try {
    let bytesPushed = 0;
    let layersPushed = 0;
    let descriptor: KvDescriptor | undefined;
    for await (const event of events) {
      if (event.type === "accepted") {
        descriptor = event.descriptor;
        response = new Promise((resolve, reject) => {
          stream = client.makeClientStreamRequest(
            R.pushKv.path,
            R.pushKv.requestSerialize,
            R.pushKv.responseDeserialize,
            metadata,
            {},
            (error, value) =>
              error
                ? reject(receiverError(error))
                : resolve({ committed: value!.committed, cacheId: value!.cacheId }),
          );
        });
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
        stream!.end();
        const receipt = await response!;
        if (!receipt.committed) {
          throw new OpalError(Code.ABORTED, "the receiver did not commit the cache", {
            reason: Reason.PUSH_REJECTED,
          });
        }
        committed = true;
        yield { type: "completed", stats: { ...stats, pushReceipt: receipt } };
      }
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    // A push that did not commit is cancelled, so the receiver discards what it got.
    if (!committed) stream?.cancel();
    client.close();
  }

  async function write(message: PushMessage): Promise<void> {
    if (!stream) throw new OpalError(Code.INTERNAL, "push stream not open");
    if (!stream.write(message)) {
      // A receiver that stops reading would hold the device's slot: it gets the stall timeout.
      const drained = waitForDrain(stream, signal, stallTimeoutMs, pushStalled);
      // The receiver's answer may end the push first; the wait then settles unobserved.
      drained.catch(() => {});
      await Promise.race([drained, response]);
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

/** A client of the receiver; an address grpc-js cannot parse is INVALID_ARGUMENT INVALID_FIELD. */
function connectReceiver(target: PushTarget): Client {
  try {
    return new Client(
      target.address,
      target.useTls ? credentials.createSsl() : credentials.createInsecure(),
      {
        "grpc.max_send_message_length": 64 * 1024 * 1024,
        "grpc-node.flow_control_window": 16 * 1024 * 1024,
      },
    );
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
function receiverError(error: { code?: number; details?: string; metadata?: Metadata }): OpalError {
  const opal = fromGrpcStatus(error);
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
