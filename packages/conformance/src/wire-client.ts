import { OpalError } from "@opal/core";
import {
  createGrpcChannel,
  DeviceServiceDefinition as D,
  type GrpcCallOptions,
  type GrpcMethod,
  type GrpcTlsOptions,
  type opal,
  peerStatusOf,
} from "@opal/protocol";
import { decodeWireStatusDetails, toWireError, type WireStatus } from "./wire-status";

type Definitions = typeof D;
type MethodName = keyof Definitions;
/** Request type of a DeviceService method. */
export type WireRequest<M extends MethodName> = Parameters<Definitions[M]["requestSerialize"]>[0];
/** Response type of a DeviceService method. */
export type WireResponse<M extends MethodName> = ReturnType<Definitions[M]["responseDeserialize"]>;
/** Unary DeviceService methods. */
export type UnaryMethod =
  | "getInfo"
  | "getCapabilities"
  | "probe"
  | "listModels"
  | "unloadModel"
  | "releaseKv";
/** Server-streaming DeviceService methods. */
export type StreamMethod = "prefill" | "fetchKv" | "watchTelemetry";

/** Options of {@link createWireClient}; every field is optional. */
export interface WireClientOptions {
  /** Bearer token sent on every call; default none. */
  readonly token?: string;
  /** TLS; default plaintext. */
  readonly tls?: GrpcTlsOptions;
  /**
   * HTTP/2 flow-control window in bytes; default 16 MiB. `0` keeps the transport's default
   * (64 KiB), which a "slow reader" uses to hold a device back.
   */
  readonly flowControlWindowBytes?: number;
}

/** Per-call options. */
export interface WireCallOptions {
  /** Deadline of the call (`grpc-timeout`), in ms; default 30,000 for unary calls, none for streams. */
  readonly timeoutMs?: number;
  /** Cancels the call. */
  readonly signal?: AbortSignal;
  /** Send this token instead of the client's (`null`: send none). */
  readonly token?: string | null;
}

/** A server stream being read: pull messages at your pace, or cancel it. */
export interface WireStream<T> extends AsyncIterable<T> {
  /** Cancels the call (the device sees CANCELLED). */
  cancel(): void;
}

/**
 * A raw `opal.device.v1.DeviceService` client: wire messages in and out, nothing validated or
 * converted, so the suite can send what a well-behaved client never would. Failures throw an
 * `OpalError` whose `cause` is the {@link WireStatus} (see `toWireStatus`).
 */
export interface WireClient {
  readonly target: string;
  unary<M extends UnaryMethod>(
    method: M,
    request: WireRequest<M>,
    options?: WireCallOptions,
  ): Promise<WireResponse<M>>;
  /** A unary call with hand-encoded request bytes (unknown fields, unusual encodings). */
  unaryBytes<M extends UnaryMethod>(
    method: M,
    request: Uint8Array,
    options?: WireCallOptions,
  ): Promise<WireResponse<M>>;
  stream<M extends StreamMethod>(
    method: M,
    request: WireRequest<M>,
    options?: WireCallOptions,
  ): WireStream<WireResponse<M>>;
  /** A server stream with hand-encoded request bytes. */
  streamBytes<M extends StreamMethod>(
    method: M,
    request: Uint8Array,
    options?: WireCallOptions,
  ): WireStream<WireResponse<M>>;
  /** `LoadModel`: sends `messages` in order, half-closes, resolves with the response. */
  loadModel(
    messages: readonly opal.device.v1.LoadModelRequest.$Properties[],
    options?: WireCallOptions,
  ): Promise<opal.device.v1.LoadModelResponse>;
  close(): void;
}

const identity = (bytes: Uint8Array): Buffer =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/** Largest message either way, in bytes: a 64 MiB chunk and its fields. */
const MAX_MESSAGE_BYTES = 67_174_400 + 65_536;

/** Connects lazily to `target` (`host:port`). */
export function createWireClient(target: string, options: WireClientOptions = {}): WireClient {
  const window = options.flowControlWindowBytes ?? 16 * 1024 * 1024;
  const channel = createGrpcChannel(target, {
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.token ? { token: options.token } : {}),
    channel: {
      maxReceiveMessageBytes: MAX_MESSAGE_BYTES,
      maxSendMessageBytes: MAX_MESSAGE_BYTES,
      ...(window > 0 ? { flowControlWindowBytes: window } : {}),
    },
  });
  // Hand-encoded requests go out as they are: the method's serializer is the identity.
  const method = <M extends MethodName>(name: M, raw: boolean) =>
    (raw ? { ...D[name], requestSerialize: identity } : D[name]) as unknown as GrpcMethod<
      unknown,
      WireResponse<M>
    >;

  async function unaryCall<M extends UnaryMethod>(
    name: M,
    request: unknown,
    raw: boolean,
    call: WireCallOptions = {},
  ): Promise<WireResponse<M>> {
    try {
      return await channel.unary(method(name, raw), request, callOptions(call, 30_000));
    } catch (error) {
      throw toWireError(toStatus(error, 0));
    }
  }

  function streamCall<M extends StreamMethod>(
    name: M,
    request: unknown,
    raw: boolean,
    call: WireCallOptions = {},
  ): WireStream<WireResponse<M>> {
    const cancelled = new AbortController();
    const signal = call.signal
      ? AbortSignal.any([call.signal, cancelled.signal])
      : cancelled.signal;
    return {
      cancel: () => cancelled.abort(),
      async *[Symbol.asyncIterator]() {
        let received = 0;
        try {
          for await (const message of channel.serverStream(
            method(name, raw),
            request,
            callOptions({ ...call, signal }),
          )) {
            received++;
            yield message;
          }
        } catch (error) {
          throw toWireError(toStatus(error, received));
        }
      },
    };
  }

  return {
    target,
    unary: (name, request, call) => unaryCall(name, request, false, call),
    unaryBytes: (name, bytes, call) => unaryCall(name, bytes, true, call),
    stream: (name, request, call) => streamCall(name, request, false, call),
    streamBytes: (name, bytes, call) => streamCall(name, bytes, true, call),
    async loadModel(messages, call = {}) {
      try {
        return await channel.clientStream(D.loadModel, messages, callOptions(call, 120_000));
      } catch (error) {
        throw toWireError(toStatus(error, 0));
      }
    },
    close: () => channel.close(),
  };
}

/** The adapter's options for one call: signal, deadline, and the call's own token if it has one. */
function callOptions(call: WireCallOptions, fallbackTimeoutMs?: number): GrpcCallOptions {
  const timeoutMs = call.timeoutMs ?? fallbackTimeoutMs;
  return {
    ...(call.signal ? { signal: call.signal } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    ...(call.token !== undefined
      ? { metadata: { authorization: call.token ? `Bearer ${call.token}` : "" } }
      : {}),
  };
}

/**
 * The status behind a failed call: the device's, exactly as sent (its trailer decoded here), or,
 * for a call this client ended (abort, deadline), the client's code and message.
 */
function toStatus(error: unknown, messagesBefore: number): WireStatus {
  const peer = peerStatusOf(error);
  if (!peer) {
    const opal = OpalError.from(error);
    return { code: opal.code, message: opal.rawMessage, messagesBefore };
  }
  const base = { code: peer.code, message: peer.details, messagesBefore };
  if (!peer.statusDetailsBin) return base;
  try {
    return { ...base, details: decodeWireStatusDetails(peer.statusDetailsBin) };
  } catch (cause) {
    return { ...base, detailsError: (cause as Error).message };
  }
}
