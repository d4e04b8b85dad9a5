import {
  type ChannelCredentials,
  type ChannelOptions,
  Client,
  type ClientReadableStream,
  credentials as grpcCredentials,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";
import { Code, OpalError } from "@opal/core";
import { DeviceServiceDefinition as D, type opal, STATUS_DETAILS_TRAILER } from "@opal/protocol";
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

/** TLS settings of the suite's connections (PEM text). */
export interface WireTlsOptions {
  readonly caPem?: string;
  readonly certChainPem?: string;
  readonly privateKeyPem?: string;
  /** Expected server name when it differs from the target host. */
  readonly serverNameOverride?: string;
}

/** Options of {@link createWireClient}; every field is optional. */
export interface WireClientOptions {
  /** Bearer token sent on every call; default none. */
  readonly token?: string;
  readonly tls?: WireTlsOptions;
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

/** Connects lazily to `target` (`host:port`). */
export function createWireClient(target: string, options: WireClientOptions = {}): WireClient {
  const window = options.flowControlWindowBytes ?? 16 * 1024 * 1024;
  const channelOptions: ChannelOptions = {
    "grpc.max_receive_message_length": 67_174_400 + 65_536,
    "grpc.max_send_message_length": 67_174_400 + 65_536,
    ...(window > 0 ? { "grpc-node.flow_control_window": window } : {}),
    ...(options.tls?.serverNameOverride
      ? { "grpc.ssl_target_name_override": options.tls.serverNameOverride }
      : {}),
  };
  const client = new Client(target, toCredentials(options.tls), channelOptions);

  const metadata = (call: WireCallOptions) => {
    const m = new Metadata();
    const token = call.token === undefined ? options.token : call.token;
    if (token) m.set("authorization", `Bearer ${token}`);
    return m;
  };
  const deadline = (call: WireCallOptions, fallbackMs?: number) => {
    const ms = call.timeoutMs ?? fallbackMs;
    return ms === undefined ? {} : { deadline: Date.now() + ms };
  };

  function unaryCall<M extends UnaryMethod>(
    method: M,
    request: unknown,
    serialize: (value: never) => Buffer,
    call: WireCallOptions = {},
  ): Promise<WireResponse<M>> {
    const definition = D[method];
    return new Promise((resolve, reject) => {
      if (call.signal?.aborted)
        return reject(new OpalError(Code.CANCELLED, "cancelled before the call"));
      const pending = client.makeUnaryRequest(
        definition.path,
        serialize as (value: unknown) => Buffer,
        definition.responseDeserialize as (bytes: Buffer) => WireResponse<M>,
        request,
        metadata(call),
        deadline(call, 30_000),
        (error, response) => {
          call.signal?.removeEventListener("abort", onAbort);
          if (error) reject(toWireError(toStatus(error, 0)));
          else resolve(response as WireResponse<M>);
        },
      );
      const onAbort = () => pending.cancel();
      call.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  function streamCall<M extends StreamMethod>(
    method: M,
    request: unknown,
    serialize: (value: never) => Buffer,
    call: WireCallOptions = {},
  ): WireStream<WireResponse<M>> {
    const definition = D[method];
    const stream: ClientReadableStream<WireResponse<M>> = client.makeServerStreamRequest(
      definition.path,
      serialize as (value: unknown) => Buffer,
      definition.responseDeserialize as (bytes: Buffer) => WireResponse<M>,
      request,
      metadata(call),
      deadline(call),
    );
    // Without an error listener a failure before anyone iterates would crash the process.
    stream.on("error", () => {});
    const onAbort = () => stream.cancel();
    call.signal?.addEventListener("abort", onAbort, { once: true });
    return {
      cancel: () => stream.cancel(),
      async *[Symbol.asyncIterator]() {
        let received = 0;
        try {
          for await (const message of stream) {
            received++;
            yield message as WireResponse<M>;
          }
        } catch (error) {
          throw toWireError(toStatus(error, received));
        } finally {
          call.signal?.removeEventListener("abort", onAbort);
          stream.cancel();
        }
      },
    };
  }

  return {
    target,
    unary: (method, request, call) =>
      unaryCall(method, request, D[method].requestSerialize as (value: never) => Buffer, call),
    unaryBytes: (method, bytes, call) => unaryCall(method, bytes, identity as never, call),
    stream: (method, request, call) =>
      streamCall(method, request, D[method].requestSerialize as (value: never) => Buffer, call),
    streamBytes: (method, bytes, call) => streamCall(method, bytes, identity as never, call),
    loadModel(messages, call = {}) {
      return new Promise((resolve, reject) => {
        const stream = client.makeClientStreamRequest(
          D.loadModel.path,
          D.loadModel.requestSerialize,
          D.loadModel.responseDeserialize,
          metadata(call),
          deadline(call, 120_000),
          (error, response) => {
            if (error) reject(toWireError(toStatus(error, 0)));
            else resolve(response as opal.device.v1.LoadModelResponse);
          },
        );
        call.signal?.addEventListener("abort", () => stream.cancel(), { once: true });
        (async () => {
          for (const message of messages) {
            if (!stream.write(message)) await new Promise((r) => stream.once("drain", r));
          }
          stream.end();
        })().catch(() => stream.cancel());
      });
    },
    close: () => client.close(),
  };
}

/** grpc-js channel credentials for `tls` (plaintext when undefined). */
export function toCredentials(tls: WireTlsOptions | undefined): ChannelCredentials {
  if (!tls) return grpcCredentials.createInsecure();
  return grpcCredentials.createSsl(
    tls.caPem ? Buffer.from(tls.caPem) : null,
    tls.privateKeyPem ? Buffer.from(tls.privateKeyPem) : null,
    tls.certChainPem ? Buffer.from(tls.certChainPem) : null,
  );
}

function toStatus(error: unknown, messagesBefore: number): WireStatus {
  const e = error as Partial<ServiceError>;
  if (typeof e.code !== "number") {
    return {
      code: Code.UNKNOWN,
      message: String((error as Error)?.message ?? error),
      messagesBefore,
    };
  }
  const bytes = e.metadata?.get(STATUS_DETAILS_TRAILER)[0];
  const base = { code: e.code, message: e.details ?? "", messagesBefore };
  if (!(bytes instanceof Uint8Array)) return base;
  try {
    return { ...base, details: decodeWireStatusDetails(bytes) };
  } catch (cause) {
    return { ...base, detailsError: (cause as Error).message };
  }
}
