import type { ClientWritableStream } from "@grpc/grpc-js";

/**
 * Writes `requests` to a client stream in order, waiting for `drain` whenever grpc-js's write
 * buffer is full (so a slow server holds the producer), then half-closes. Stops as soon as the call
 * is over (`callEnded` settles or `ended()` says so: the server answered early, or failed), even
 * while the iterator is still waiting for its next request: it no longer waits for a `drain` that
 * will not come, and closes the iterator (`return()`; an async generator blocked on an `await`
 * closes once that `await` settles). Rejects with what the iterator throws.
 */
export async function writeRequests<Request>(
  stream: Pick<ClientWritableStream<Request>, "write" | "end" | "once" | "removeListener">,
  requests: AsyncIterable<Request> | Iterable<Request>,
  callEnded: Promise<void>,
  ended: () => boolean,
): Promise<void> {
  const iterator =
    Symbol.asyncIterator in requests
      ? requests[Symbol.asyncIterator]()
      : requests[Symbol.iterator]();
  const over = callEnded.then(() => undefined);
  let done = false;
  try {
    while (!ended()) {
      const next = Promise.resolve(iterator.next());
      // A request pulled after the call ended is dropped, and so is its failure.
      next.catch(() => {});
      const result = await Promise.race([next, over]);
      if (!result || ended()) break;
      if (result.done) {
        done = true;
        break;
      }
      if (!stream.write(result.value)) await drained(stream, over);
    }
  } catch (error) {
    done = true;
    throw error;
  } finally {
    if (!done) void Promise.resolve(iterator.return?.()).catch(() => {});
  }
  if (!ended()) stream.end();
}

/** Resolves on the stream's next `drain`, or once the call is `over`. */
async function drained<Request>(
  stream: Pick<ClientWritableStream<Request>, "once" | "removeListener">,
  over: Promise<void>,
): Promise<void> {
  let onDrain = () => {};
  await Promise.race([
    new Promise<void>((resolve) => {
      onDrain = resolve;
      stream.once("drain", onDrain);
    }),
    over,
  ]);
  stream.removeListener("drain", onDrain);
}
