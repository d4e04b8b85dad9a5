import type { ClientDuplexStream } from "@grpc/grpc-js";
import type { GrpcCallOptions } from "./grpc-call-options";
import type { GrpcMethod } from "./grpc-method";
import { type GrpcCallContext, startCall } from "./start-call";
import { toCallError } from "./to-call-error";
import { writeRequests } from "./write-requests";

/**
 * One bidirectional call, started on the first `next()`: writes `requests` with back-pressure
 * (see `writeRequests`) while the responses are pulled as in `grpcServerStream`. Ending the
 * iteration early or aborting cancels the call; a throwing requests iterator cancels it too.
 */
export async function* grpcBidiStream<Request, Response>(
  context: GrpcCallContext,
  method: GrpcMethod<Request, Response>,
  requests: AsyncIterable<Request> | Iterable<Request>,
  options?: GrpcCallOptions,
): AsyncGenerator<Response> {
  const call = startCall(context, options);
  let stream: ClientDuplexStream<Request, Response> | undefined;
  const onAbort = () => stream?.cancel();
  let ended = false;
  let onEnded = () => {};
  const callEnded = new Promise<void>((settle) => {
    onEnded = settle;
  });
  let failure: unknown;
  try {
    stream = context.client.makeBidiStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      call.metadata,
      call.grpcOptions,
    );
    const duplex = stream;
    duplex.once("status", () => {
      ended = true;
      onEnded();
    });
    if (call.signal.aborted) onAbort();
    else call.signal.addEventListener("abort", onAbort, { once: true });
    writeRequests(duplex, requests, callEnded, () => ended).catch((error: unknown) => {
      failure = error;
      duplex.cancel();
    });
    for await (const message of duplex) yield message as Response;
    ended = true;
  } catch (error) {
    throw toCallError(failure ?? error, call.signal);
  } finally {
    call.signal.removeEventListener("abort", onAbort);
    call.dispose();
    if (!ended) stream?.cancel();
    onEnded();
  }
}
