import type { ServiceContext } from "./service-context";

/** How a method streams: one request and one response, a response stream, or a request stream. */
export type ServiceMethodKind = "unary" | "serverStream" | "clientStream";

/** A call as an interceptor sees it, before its handler runs. */
export interface InterceptedCall<Ctx extends ServiceContext> {
  readonly kind: ServiceMethodKind;
  /**
   * The call's context, writable: an interceptor sets the values its service's context declares
   * (e.g. the tenant) and may replace `signal` with one that also aborts for its own reasons.
   */
  readonly context: { -readonly [K in keyof Ctx]: Ctx[K] };
}

/**
 * Middleware around every call of a service (nice-grpc style). `next()` runs the interceptors after
 * this one and the handler; it resolves once the call's response (or every streamed response) is
 * written, and rejects with the error the call will end with, which an interceptor may observe,
 * replace or rethrow. Throwing before `next()` refuses the call with that error (an `OpalError`
 * becomes its status; anything else INTERNAL). The status itself is sent after every interceptor
 * has returned.
 */
export type ServiceInterceptor<Ctx extends ServiceContext> = (
  call: InterceptedCall<Ctx>,
  next: () => Promise<void>,
) => Promise<void>;
