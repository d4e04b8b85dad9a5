import type { ClientWritableStream } from "@grpc/grpc-js";

/**
 * Writes `requests` to a client stream in order, waiting for `drain` whenever grpc-js's write
 * buffer is full (so a slow server holds the producer), then half-closes. Stops as soon as
 * `ended()` says the call is over (the server answered early, or failed): it no longer waits for
 * a `drain` that will not come, and the requests iterator is closed. Rejects with what the
 * iterator throws.
 */
export async function writeRequests<Request>(
  stream: Pick<ClientWritableStream<Request>, "write" | "end" | "once" | "removeListener">,
  requests: AsyncIterable<Request> | Iterable<Request>,
  callEnded: Promise<void>,
  ended: () => boolean,
): Promise<void> {
  for await (const request of requests) {
    if (ended()) break;
    if (!stream.write(request)) {
      let onDrain = () => {};
      await Promise.race([
        new Promise<void>((drained) => {
          onDrain = drained;
          stream.once("drain", onDrain);
        }),
        callEnded,
      ]);
      stream.removeListener("drain", onDrain);
    }
    if (ended()) break;
  }
  if (!ended()) stream.end();
}
