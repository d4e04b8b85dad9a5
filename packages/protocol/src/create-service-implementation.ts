import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { assertTimerMs } from "@opal/core";
import { tolerantDeserializer } from "./malformed-request";
import { type ServedMethod, serveServiceMethod } from "./serve-service-method";
import type { ServiceContext } from "./service-context";
import type { ServiceDefinitionOf, ServiceHandlers } from "./service-handlers";
import type { ServiceInterceptor } from "./service-interceptor";

/** A service ready to serve: what grpc-js' `Server.addService` takes, for {@link listenGrpc}. */
export interface GrpcService {
  readonly definition: ServiceDefinition;
  readonly implementation: UntypedServiceImplementation;
}

/** Options of {@link createServiceImplementation}; every field is optional. */
export interface ServiceImplementationOptions<Ctx extends ServiceContext> {
  /** Run around every call, the first outermost; default none. */
  readonly interceptors?: readonly ServiceInterceptor<Ctx>[];
  /**
   * How long a response stream may wait for its caller to read before it ends DEADLINE_EXCEEDED
   * ("stalled", PF-49), in ms: an integer from 1 to `MAX_TIMER_MS`; default 30 000.
   */
  readonly streamStallTimeoutMs?: number;
}

/** Default of {@link ServiceImplementationOptions.streamStallTimeoutMs}, in ms. */
export const DEFAULT_STREAM_STALL_TIMEOUT_MS = 30_000;

/**
 * Serves `definition` (a generated service definition) with typed `handlers`: unary handlers
 * resolve with their response, server-streaming ones return an `AsyncIterable` of responses
 * (written with back-pressure), client-streaming ones read an `AsyncIterable` of requests. Every
 * call runs behind `options.interceptors` with a {@link ServiceContext} whose signal aborts on
 * cancellation and at the deadline. Requests that do not parse reach the call as INVALID_ARGUMENT
 * INVALID_FIELD (ERR-2), raised after the interceptors (so after authentication). A thrown
 * `OpalError` ends the call with its status and rich details trailer; anything else INTERNAL
 * "internal error". Bidirectional methods are not supported. Throws INVALID_ARGUMENT INVALID_FIELD
 * for a bad `options.streamStallTimeoutMs`.
 */
export function createServiceImplementation<
  Definition extends ServiceDefinitionOf,
  Ctx extends ServiceContext = ServiceContext,
>(
  definition: Definition,
  handlers: ServiceHandlers<Definition, Ctx>,
  options: ServiceImplementationOptions<Ctx> = {},
): GrpcService {
  const streamStallTimeoutMs = options.streamStallTimeoutMs ?? DEFAULT_STREAM_STALL_TIMEOUT_MS;
  assertTimerMs("streamStallTimeoutMs", streamStallTimeoutMs, 1);
  const served: Record<string, unknown> = {};
  const implementation: UntypedServiceImplementation = {};
  for (const [key, method] of Object.entries(definition)) {
    const name = method.originalName ?? key;
    served[key] = {
      ...method,
      requestDeserialize: tolerantDeserializer(name, method.requestDeserialize),
    };
    const spec: ServedMethod<Ctx> = {
      name,
      interceptors: options.interceptors ?? [],
      streamStallTimeoutMs,
    };
    const handler = handlers[key as keyof Definition] as never;
    if (typeof handler !== "function") throw new TypeError(`${name}: no handler`);
    implementation[key] = serveServiceMethod(spec, method, handler);
  }
  return { definition: served as ServiceDefinition, implementation };
}
