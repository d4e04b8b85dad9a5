import { createChannel, type OpalError } from "@opal/core";
import { createGrpcChannel, type opal, KvReceiverServiceDefinition as R } from "@opal/protocol";

/** One `PushKvRequest` message, as a raw PushKv call writes it. */
export type PushRequest = opal.device.v1.PushKvRequest.$Properties;

/** How a raw PushKv call ended: the receiver's response, or its error as an OpalError. */
export interface PushOutcomeOnWire {
  readonly response?: opal.device.v1.PushKvResponse;
  readonly error?: OpalError;
}

/** The client side of a raw PushKv call, written message by message. */
export interface PushCall {
  /** Queues any message (a header, an empty one, a chunk); ignored once the call has ended. */
  write(message: PushRequest): void;
  /** Half-closes the call after the queued messages. */
  end(): void;
  /** Cancels the call: the receiver sees CANCELLED. */
  cancel(): void;
}

/** A raw PushKv call that the test writes message by message. */
export interface OpenPush {
  readonly call: PushCall;
  /** Settles (never rejects) with the receiver's answer once the call ends. */
  readonly result: Promise<PushOutcomeOnWire>;
}

/**
 * Opens a PushKv call to the KvReceiver at `address` (`host:port`, plaintext) on its own channel,
 * presenting `token` as `authorization: Bearer`, with a 30 s deadline; writes nothing. Lets a test
 * send what a device never would (empty messages, a chunk now and then, a forged commit), as an
 * attacker holding a receiver token does. Messages go out in order, as the receiver reads them.
 * The channel closes when the call settles.
 */
export function openPush(address: string, token?: string): OpenPush {
  const channel = createGrpcChannel(address, token ? { token } : {});
  const messages = createChannel<PushRequest>({ capacity: Number.MAX_SAFE_INTEGER });
  const cancelled = new AbortController();
  const result = channel
    .clientStream(R.pushKv, messages, { timeoutMs: 30_000, signal: cancelled.signal })
    .then(
      (response): PushOutcomeOnWire => ({ response }),
      (error: OpalError): PushOutcomeOnWire => ({ error }),
    )
    .finally(() => channel.close());
  return {
    call: {
      write: (message) => void messages.send(message).catch(() => {}),
      end: () => messages.close(),
      cancel: () => cancelled.abort(),
    },
    result,
  };
}
