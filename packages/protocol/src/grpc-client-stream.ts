import { toAbortError } from "@opal/core";
import type { GrpcCallOptions } from "./grpc-call-options";
import type { GrpcMethod } from "./grpc-method";
import { type GrpcCallContext, startCall } from "./start-call";
import { toCallError } from "./to-call-error";
import { writeRequests } from "./write-requests";

/**
 * One client-streaming call: writes `requests` with back-pressure (see `writeRequests`), half-closes,
 * and resolves with the response. The requests iterator is closed once the call ends, even while it
 * waits for its producer; when it throws, the call is cancelled and the promise rejects with that
 * error as an `OpalError` (or the abort reason when the call was aborted, see `toCallError`).
 */
export async function grpcClientStream<Request, Response>(
  context: GrpcCallContext,
  method: GrpcMethod<Request, Response>,
  requests: AsyncIterable<Request> | Iterable<Request>,
  options?: GrpcCallOptions,
): Promise<Response> {
  const call = startCall(context, options);
  try {
    return await new Promise<Response>((resolve, reject) => {
      if (call.signal.aborted) return reject(toAbortError(call.signal.reason));
      let ended = false;
      let onEnded = () => {};
      const callEnded = new Promise<void>((settle) => {
        onEnded = settle;
      });
      const stream = context.client.makeClientStreamRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        call.metadata,
        call.grpcOptions,
        (error, response) => {
          ended = true;
          onEnded();
          call.signal.removeEventListener("abort", onAbort);
          if (error) reject(toCallError(error, call.signal));
          else resolve(response as Response);
        },
      );
      const onAbort = () => stream.cancel();
      call.signal.addEventListener("abort", onAbort, { once: true });
      writeRequests(stream, requests, callEnded, () => ended).catch((error: unknown) => {
        stream.cancel();
        reject(toCallError(error, call.signal));
      });
    });
  } finally {
    call.dispose();
  }
}
