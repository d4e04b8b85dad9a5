import type { ClientReadableStream } from "@grpc/grpc-js";
import type { GrpcCallOptions } from "./grpc-call-options";
import type { GrpcMethod } from "./grpc-method";
import { type GrpcCallContext, startCall } from "./start-call";
import { toCallError } from "./to-call-error";

/**
 * One server-streaming call, started on the first `next()`. Messages are pulled: the grpc-js
 * stream buffers at most its high-water mark (16 messages) and then stops reading, so HTTP/2 flow
 * control holds the server while the caller does not ask. After an abort no message is delivered,
 * buffered or not. Ending the iteration early (break,
 * return, throw) or aborting cancels the call; every failure is an `OpalError` (see `toCallError`).
 */
export async function* grpcServerStream<Request, Response>(
  context: GrpcCallContext,
  method: GrpcMethod<Request, Response>,
  request: Request,
  options?: GrpcCallOptions,
): AsyncGenerator<Response> {
  const call = startCall(context, options);
  let stream: ClientReadableStream<Response> | undefined;
  const onAbort = () => stream?.cancel();
  let finished = false;
  try {
    stream = context.client.makeServerStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      request,
      call.metadata,
      call.grpcOptions,
    );
    if (call.signal.aborted) onAbort();
    else call.signal.addEventListener("abort", onAbort, { once: true });
    for await (const message of stream) {
      // Once aborted, nothing more: not even what grpc-js had buffered.
      if (call.signal.aborted) break;
      yield message as Response;
    }
    if (call.signal.aborted) throw call.signal.reason;
    finished = true;
  } catch (error) {
    throw toCallError(error, call.signal);
  } finally {
    call.signal.removeEventListener("abort", onAbort);
    call.dispose();
    if (!finished) stream?.cancel();
  }
}
