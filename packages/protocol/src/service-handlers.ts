import type { ServiceContext } from "./service-context";

/** The method of a generated service definition, as a server sees it. */
export interface ServiceMethod<Request = unknown, Response = unknown> {
  /** `/package.Service/Method`. */
  readonly path: string;
  /** The method's `.proto` name (`UnloadModel`); default the definition's key. */
  readonly originalName?: string;
  /** Whether the client sends a stream of requests. */
  readonly requestStream: boolean;
  /** Whether the server answers with a stream of responses. */
  readonly responseStream: boolean;
  /** Decodes one request from its protobuf bytes; throws for bytes that do not parse. */
  readonly requestDeserialize: (bytes: Buffer) => Request;
  /** Encodes one response message (protobuf bytes). */
  readonly responseSerialize: (message: Response) => Buffer;
}

/** A generated service definition (`DeviceServiceDefinition`, `KvReceiverServiceDefinition`). */
export type ServiceDefinitionOf = { readonly [name: string]: ServiceMethod<unknown, never> };

/** The request a server receives for a method (its `requestDeserialize` output). */
export type RequestOf<M> = M extends { requestDeserialize: (bytes: Buffer) => infer R } ? R : never;
/** The response a server sends for a method (its `responseSerialize` input). */
export type ResponseOf<M> = M extends { responseSerialize: (message: infer R) => Buffer }
  ? R
  : never;

/** A unary method's handler: resolves with the response, or throws the call's error. */
export type UnaryHandler<Req, Res, Ctx> = (request: Req, ctx: Ctx) => Promise<Res>;
/**
 * A server-streaming method's handler: each value is written in turn, waiting while the caller's
 * flow-control window is full; the call ends OK when the iterable ends, or with what it throws.
 */
export type ServerStreamHandler<Req, Res, Ctx> = (request: Req, ctx: Ctx) => AsyncIterable<Res>;
/**
 * A client-streaming method's handler: `requests` yields the caller's messages (each checked
 * well-formed) and ends when the caller half-closes; it throws the call's abort reason when the
 * caller cancels.
 */
export type ClientStreamHandler<Req, Res, Ctx> = (
  requests: AsyncIterable<Req>,
  ctx: Ctx,
) => Promise<Res>;

/** The handler a method takes, by how it streams (bidirectional methods are not supported). */
export type HandlerOf<M, Ctx> = M extends { requestStream: false; responseStream: false }
  ? UnaryHandler<RequestOf<M>, ResponseOf<M>, Ctx>
  : M extends { requestStream: false; responseStream: true }
    ? ServerStreamHandler<RequestOf<M>, ResponseOf<M>, Ctx>
    : M extends { requestStream: true; responseStream: false }
      ? ClientStreamHandler<RequestOf<M>, ResponseOf<M>, Ctx>
      : never;

/** One typed handler per method of `Definition`, each called with the call's context `Ctx`. */
export type ServiceHandlers<Definition, Ctx extends ServiceContext = ServiceContext> = {
  readonly [K in keyof Definition]: HandlerOf<Definition[K], Ctx>;
};
