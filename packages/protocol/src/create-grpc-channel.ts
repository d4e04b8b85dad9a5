import { Code, createCallRegistry, OpalError, Reason } from "@opal/core";
import { connectGrpc } from "./connect-grpc";
import { grpcBidiStream } from "./grpc-bidi-stream";
import type { GrpcCallOptions } from "./grpc-call-options";
import { grpcClientStream } from "./grpc-client-stream";
import type { GrpcConnectionOptions } from "./grpc-connection-options";
import type { GrpcMethod } from "./grpc-method";
import { grpcServerStream } from "./grpc-server-stream";
import { grpcUnaryCall } from "./grpc-unary-call";
import type { GrpcCallContext } from "./start-call";

/**
 * A connection to one gRPC server and the calls in progress on it. Every call takes
 * {@link GrpcCallOptions}: `signal` ends it with CANCELLED (or the signal's `OpalError` reason),
 * `timeoutMs` with DEADLINE_EXCEEDED (sent to the server as `grpc-timeout` too); any other failure
 * is the server's status as an `OpalError` (rich details decoded, the raw status in `cause`, see
 * `peerStatusOf`). Bad call options throw INVALID_ARGUMENT before anything is sent.
 */
export interface GrpcChannel {
  /** The address this channel connects to. */
  readonly address: string;
  /** One unary call: resolves with the response, or rejects with the call's `OpalError`. */
  unary<Request, Response>(
    method: GrpcMethod<Request, Response>,
    request: Request,
    options?: GrpcCallOptions,
  ): Promise<Response>;
  /** A server stream, started on the first `next()`; see `grpcServerStream` for back-pressure. */
  serverStream<Request, Response>(
    method: GrpcMethod<Request, Response>,
    request: Request,
    options?: GrpcCallOptions,
  ): AsyncIterable<Response>;
  /** A client stream: writes `requests` as the server reads them, resolves with the response. */
  clientStream<Request, Response>(
    method: GrpcMethod<Request, Response>,
    requests: AsyncIterable<Request> | Iterable<Request>,
    options?: GrpcCallOptions,
  ): Promise<Response>;
  /** A bidirectional stream, started on the first `next()`. */
  bidiStream<Request, Response>(
    method: GrpcMethod<Request, Response>,
    requests: AsyncIterable<Request> | Iterable<Request>,
    options?: GrpcCallOptions,
  ): AsyncIterable<Response>;
  /** How many calls are in progress (a count). */
  readonly callsInProgress: number;
  /**
   * Ends every call in progress with `reason` (default CANCELLED `the channel to <address> was
   * closed`), makes later calls fail with it at once, and closes the connection. Idempotent.
   */
  close(reason?: OpalError): void;
}

/**
 * Opens a {@link GrpcChannel} to `address` (`host:port`, or any grpc-js target such as
 * `dns:///name:port`); the connection is made lazily on the first call. An address grpc-js cannot
 * parse throws INVALID_ARGUMENT INVALID_FIELD `address`.
 */
export function createGrpcChannel(
  address: string,
  options: GrpcConnectionOptions = {},
): GrpcChannel {
  const context: GrpcCallContext = {
    client: connectGrpc(address, options),
    calls: createCallRegistry(),
    token: options.token,
    closedError: undefined,
  };
  return {
    address,
    unary: (method, request, call) => grpcUnaryCall(context, method, request, call),
    serverStream: (method, request, call) => grpcServerStream(context, method, request, call),
    clientStream: (method, requests, call) => grpcClientStream(context, method, requests, call),
    bidiStream: (method, requests, call) => grpcBidiStream(context, method, requests, call),
    get callsInProgress() {
      return context.calls.size;
    },
    close(reason) {
      if (context.closedError) return;
      context.closedError =
        reason ??
        new OpalError(Code.CANCELLED, `the channel to ${address} was closed`, {
          reason: Reason.CANCELLED,
        });
      context.calls.abortAll(context.closedError);
      context.client.close();
    },
  };
}
