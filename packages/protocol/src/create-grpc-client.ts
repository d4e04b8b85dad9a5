import { createGrpcChannel, type GrpcChannel } from "./create-grpc-channel";
import type { GrpcCallOptions } from "./grpc-call-options";
import type { GrpcConnectionOptions } from "./grpc-connection-options";
import type { GrpcMethod, GrpcRequest, GrpcResponse } from "./grpc-method";

/** The client method of one method definition, by its streaming kind. */
export type GrpcClientMethod<M> = M extends { requestStream: true; responseStream: true }
  ? (
      requests: AsyncIterable<GrpcRequest<M>> | Iterable<GrpcRequest<M>>,
      options?: GrpcCallOptions,
    ) => AsyncIterable<GrpcResponse<M>>
  : M extends { requestStream: true }
    ? (
        requests: AsyncIterable<GrpcRequest<M>> | Iterable<GrpcRequest<M>>,
        options?: GrpcCallOptions,
      ) => Promise<GrpcResponse<M>>
    : M extends { responseStream: true }
      ? (request: GrpcRequest<M>, options?: GrpcCallOptions) => AsyncIterable<GrpcResponse<M>>
      : (request: GrpcRequest<M>, options?: GrpcCallOptions) => Promise<GrpcResponse<M>>;

/**
 * A typed client of a grpc-js service definition: for each method, unary
 * `(request, options?) => Promise<Response>`, server-streaming `(request, options?) =>
 * AsyncIterable<Response>`, client-streaming `(requests, options?) => Promise<Response>`, and
 * bidirectional `(requests, options?) => AsyncIterable<Response>`; `channel` is the connection
 * under it (see {@link GrpcChannel} for errors, deadlines, back-pressure and `close`).
 */
export type GrpcClient<Definition> = {
  readonly [Name in keyof Definition]: GrpcClientMethod<Definition[Name]>;
} & { readonly channel: GrpcChannel };

/**
 * Creates a {@link GrpcClient} for `definition` (e.g. `DeviceServiceDefinition`) over a new channel
 * to `address` with `options`, or over an existing `channel` (which several clients may share).
 */
export function createGrpcClient<Definition extends Record<string, GrpcMethod<never, unknown>>>(
  definition: Definition,
  target: string | GrpcChannel,
  options: GrpcConnectionOptions = {},
): GrpcClient<Definition> {
  const channel = typeof target === "string" ? createGrpcChannel(target, options) : target;
  const methods: Record<string, unknown> = { channel };
  for (const [name, method] of Object.entries(definition) as [
    string,
    GrpcMethod<unknown, unknown>,
  ][]) {
    methods[name] = method.requestStream
      ? method.responseStream
        ? (requests: AsyncIterable<unknown>, call?: GrpcCallOptions) =>
            channel.bidiStream(method, requests, call)
        : (requests: AsyncIterable<unknown>, call?: GrpcCallOptions) =>
            channel.clientStream(method, requests, call)
      : method.responseStream
        ? (request: unknown, call?: GrpcCallOptions) => channel.serverStream(method, request, call)
        : (request: unknown, call?: GrpcCallOptions) => channel.unary(method, request, call);
  }
  return methods as GrpcClient<Definition>;
}
