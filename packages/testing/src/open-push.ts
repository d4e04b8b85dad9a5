import { Client, type ClientWritableStream, credentials, Metadata } from "@grpc/grpc-js";
import type { OpalError } from "@opal/core";
import { fromGrpcStatus, type opal, KvReceiverServiceDefinition as R } from "@opal/protocol";

/** One `PushKvRequest` message, as a raw PushKv call writes it. */
export type PushRequest = opal.device.v1.PushKvRequest.$Properties;

/** How a raw PushKv call ended: the receiver's response, or its error as an OpalError. */
export interface PushOutcomeOnWire {
  readonly response?: opal.device.v1.PushKvResponse;
  readonly error?: OpalError;
}

/** A raw PushKv call that the test writes message by message. */
export interface OpenPush {
  /** The client stream: `write` any message (a header, an empty one, a chunk), `end` or `cancel`. */
  readonly call: ClientWritableStream<PushRequest>;
  /** Settles (never rejects) with the receiver's answer once the call ends. */
  readonly result: Promise<PushOutcomeOnWire>;
}

/**
 * Opens a PushKv call to the KvReceiver at `address` (`host:port`, plaintext) on its own channel,
 * presenting `token` as `authorization: Bearer`, with a 30 s deadline; writes nothing. Lets a test
 * send what a device never would (empty messages, a chunk now and then, a forged commit), as an
 * attacker holding a receiver token does. The channel closes when the call settles.
 */
export function openPush(address: string, token?: string): OpenPush {
  const client = new Client(address, credentials.createInsecure());
  const metadata = new Metadata();
  if (token) metadata.set("authorization", `Bearer ${token}`);
  let call!: ClientWritableStream<PushRequest>;
  const result = new Promise<PushOutcomeOnWire>((resolve) => {
    call = client.makeClientStreamRequest(
      R.pushKv.path,
      R.pushKv.requestSerialize,
      R.pushKv.responseDeserialize,
      metadata,
      { deadline: Date.now() + 30_000 },
      (error, response) =>
        resolve(error ? { error: fromGrpcStatus(error) } : { response: response ?? undefined }),
    );
  }).finally(() => client.close());
  return { call, result };
}
