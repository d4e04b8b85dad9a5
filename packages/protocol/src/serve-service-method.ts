import type {
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  StatusObject,
  UntypedHandleCall,
} from "@grpc/grpc-js";
import { Code, OpalError, Reason, toAbortError } from "@opal/core";
import { toGrpcStatus } from "./grpc-status";
import { assertWellFormed } from "./malformed-request";
import { openServiceContext, type SurfaceCall } from "./open-service-context";
import type { ServiceContext } from "./service-context";
import type { ClientStreamHandler, ServerStreamHandler, UnaryHandler } from "./service-handlers";
import type { InterceptedCall, ServiceInterceptor, ServiceMethodKind } from "./service-interceptor";
import { waitForDrain } from "./wait-for-drain";

/** What every call of one method is served with. */
export interface ServedMethod<Ctx extends ServiceContext> {
  /** The method's `.proto` name. */
  readonly name: string;
  readonly interceptors: readonly ServiceInterceptor<Ctx>[];
  /** How long a response stream waits for the caller to read before it fails, in ms. */
  readonly streamStallTimeoutMs: number;
}

type Status = Pick<StatusObject, "code" | "details" | "metadata">;

/**
 * The grpc-js handler of `method` (of the kind `definition` declares): `handler` runs behind the
 * interceptors. Throws TypeError for a bidirectional method, which is not supported.
 */
export function serveServiceMethod<Ctx extends ServiceContext>(
  method: ServedMethod<Ctx>,
  definition: { readonly requestStream: boolean; readonly responseStream: boolean },
  handler: never,
): UntypedHandleCall {
  if (definition.requestStream && definition.responseStream) {
    throw new TypeError(`${method.name}: bidirectional streaming is not supported`);
  }
  if (definition.requestStream) return serveClientStream(method, handler);
  return definition.responseStream
    ? serveServerStream(method, handler)
    : serveUnary(method, handler);
}

/** A grpc-js unary handler running `handler` behind the interceptors. */
function serveUnary<Ctx extends ServiceContext>(
  method: ServedMethod<Ctx>,
  handler: UnaryHandler<unknown, unknown, Ctx>,
): handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    let response: unknown;
    void runCall(
      call,
      method,
      "unary",
      async (ctx) => {
        assertWellFormed(call.request);
        response = await handler(call.request, ctx);
      },
      (status) => (status ? callback(status) : callback(null, response)),
    );
  };
}

/**
 * A grpc-js server-streaming handler running `handler` behind the interceptors. Each response is
 * written once the previous one fits the caller's flow-control window; a caller that reads nothing
 * for `streamStallTimeoutMs` ends the call DEADLINE_EXCEEDED (PF-49), freeing what it holds.
 */
function serveServerStream<Ctx extends ServiceContext>(
  method: ServedMethod<Ctx>,
  handler: ServerStreamHandler<unknown, unknown, Ctx>,
): handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    void runCall(
      call,
      method,
      "serverStream",
      async (ctx) => {
        assertWellFormed(call.request);
        const signal = ctx.signal;
        for await (const response of handler(call.request, ctx)) {
          if (signal.aborted) throw toAbortError(signal.reason);
          if (!call.write(response)) await waitForDrain(call, signal, method.streamStallTimeoutMs);
        }
      },
      (status) => (status ? call.emit("error", status) : call.end()),
    );
  };
}

/**
 * A grpc-js client-streaming handler running `handler` behind the interceptors. The request stream
 * ends with the context's abort reason as soon as its signal aborts (cancellation, deadline,
 * shutdown).
 */
function serveClientStream<Ctx extends ServiceContext>(
  method: ServedMethod<Ctx>,
  handler: ClientStreamHandler<unknown, unknown, Ctx>,
): handleClientStreamingCall<unknown, unknown> {
  return (call, callback) => {
    let response: unknown;
    void runCall(
      call,
      method,
      "clientStream",
      async (ctx) => {
        const onAbort = () => call.destroy(toAbortError(ctx.signal.reason));
        if (ctx.signal.aborted) onAbort();
        else ctx.signal.addEventListener("abort", onAbort, { once: true });
        try {
          response = await handler(requestsOf(call, ctx.signal), ctx);
        } finally {
          ctx.signal.removeEventListener("abort", onAbort);
        }
      },
      (status) => (status ? callback(status) : callback(null, response)),
    );
  };
}

/**
 * Runs one call: opens its context, runs the interceptors around `body`, ends the call with
 * `finish` (no status: OK; else the error's status, rich details included, INTERNAL for anything
 * that is not an `OpalError`), then disposes of the context.
 */
async function runCall<Ctx extends ServiceContext>(
  call: SurfaceCall,
  method: ServedMethod<Ctx>,
  kind: ServiceMethodKind,
  body: (ctx: Ctx) => Promise<void>,
  finish: (status: Status | undefined) => void,
): Promise<void> {
  const open = openServiceContext(call, method.name);
  const intercepted = { kind, context: open.context } as unknown as InterceptedCall<Ctx>;
  const context = intercepted.context as unknown as Ctx;
  const interceptors = method.interceptors;
  const step = (index: number): Promise<void> => {
    const interceptor = interceptors[index];
    if (!interceptor)
      return body(context).catch((error) => Promise.reject(ofAbort(error, context)));
    return interceptor(intercepted, () => step(index + 1));
  };
  let status: Status | undefined;
  try {
    await step(0);
  } catch (error) {
    status = toGrpcStatus(error);
  }
  try {
    finish(status);
  } finally {
    open.dispose();
  }
}

/**
 * A handler's `AbortError` once its call's signal aborted stands for the reason it aborted with;
 * any other error (an `AbortError` of the handler's own, say) is kept as thrown.
 */
function ofAbort(error: unknown, context: ServiceContext): unknown {
  return context.signal.aborted && error instanceof Error && error.name === "AbortError"
    ? toAbortError(context.signal.reason)
    : error;
}

/** The caller's messages, each checked well-formed; a stream closed early is a cancellation. */
async function* requestsOf(
  call: AsyncIterable<unknown>,
  signal: AbortSignal,
): AsyncGenerator<never> {
  try {
    for await (const message of call) {
      assertWellFormed(message);
      yield message as never;
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException)?.code !== "ERR_STREAM_PREMATURE_CLOSE") throw error;
    throw signal.aborted
      ? toAbortError(signal.reason)
      : new OpalError(Code.CANCELLED, "the request stream ended early", {
          reason: Reason.CANCELLED,
        });
  }
}
