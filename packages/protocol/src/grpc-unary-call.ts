import { toAbortError } from "@opal/core";
import type { GrpcCallOptions } from "./grpc-call-options";
import type { GrpcMethod } from "./grpc-method";
import { type GrpcCallContext, startCall } from "./start-call";
import { toCallError } from "./to-call-error";

/** One unary call; rejects with an `OpalError` (see `toCallError`). */
export async function grpcUnaryCall<Request, Response>(
  context: GrpcCallContext,
  method: GrpcMethod<Request, Response>,
  request: Request,
  options?: GrpcCallOptions,
): Promise<Response> {
  const call = startCall(context, options);
  try {
    return await new Promise<Response>((resolve, reject) => {
      if (call.signal.aborted) return reject(toAbortError(call.signal.reason));
      const pending = context.client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        call.metadata,
        call.grpcOptions,
        (error, response) => {
          call.signal.removeEventListener("abort", onAbort);
          if (error) reject(toCallError(error, call.signal));
          else resolve(response as Response);
        },
      );
      const onAbort = () => pending.cancel();
      call.signal.addEventListener("abort", onAbort, { once: true });
    });
  } finally {
    call.dispose();
  }
}
