import {
  type ChannelOptions,
  Client,
  type ClientReadableStream,
  type CallOptions as GrpcCallOptions,
  credentials as grpcCredentials,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";
import {
  type CallSignal,
  Code,
  createCallSignal,
  OpalError,
  Reason,
  toAbortError,
} from "@opal/core";
import {
  type DeviceCapabilities,
  type DeviceInfo,
  DRIVER_API_VERSION,
  type DriverCallOptions,
  type FetchEvent,
  type LoadModelResult,
  type ModelInfo,
  type PrefillDriver,
  type PrefillEvent,
  type ProbeState,
  type TelemetrySnapshot,
} from "@opal/driver";
import {
  DeviceServiceDefinition as D,
  fromGrpcStatus,
  fromWireCapabilities,
  fromWireFetchEvent,
  fromWireInfo,
  fromWireModel,
  fromWirePrefillEvent,
  fromWireTelemetry,
  type opal,
  probeStateEnum,
  toWireFetchRequest,
  toWirePrefillRequest,
} from "@opal/protocol";
import { assertDeviceClientOptions, type DeviceClientOptions } from "./client-options";
import { createSharedMemoryPlane } from "./create-shared-memory-plane";
import { invalidOption } from "./sinks/sink-errors";
import { untilAborted } from "./until-aborted";

/** A remote device: the {@link PrefillDriver} interface over gRPC. */
export interface DeviceClient extends PrefillDriver {
  /** The target this client connects to. */
  readonly target: string;
}

/** Default channel settings (see {@link DeviceClientOptions.channel}). */
export const DEFAULT_CHANNEL = {
  flowControlWindowBytes: 16 * 1024 * 1024,
  maxMessageBytes: 64 * 1024 * 1024,
  keepaliveTimeMs: 30_000,
  keepaliveTimeoutMs: 10_000,
} as const;

/** Room for a chunk message's fields besides its data, in bytes. */
const MESSAGE_OVERHEAD = 64 * 1024;
/**
 * Largest chunk asked for on behalf of a caller that copies chunks (`keepsChunks: false`: file,
 * vLLM and SGLang sinks). Whole-part chunks save such a caller nothing, and each received message
 * is garbage once copied: smaller ones are collected sooner. Measured, 4 GiB into a file sink:
 * about 215 MiB peak RSS with 2 MiB chunks against about 250 MiB with 4 MiB, at the same speed.
 */
const COPYING_CHUNK_BYTES = 2 * 1024 * 1024;

type Method = (typeof D)[keyof typeof D];
type Req<M extends Method> = Parameters<M["requestSerialize"]>[0];
type Res<M extends Method> = ReturnType<M["responseDeserialize"]>;

/**
 * Connects to a device at `target` (`host:port`, or any grpc-js target such as `dns:///name:port`).
 * The connection is made lazily on the first call. Every failure is an `OpalError` with the device's
 * code, reason and retry delay; no grpc-js type appears in the result. Bad options throw
 * INVALID_ARGUMENT naming the field (see {@link DeviceClientOptions}). `close()` ends every call in
 * progress (so every run on this client) with CANCELLED `the client for <target> was closed`,
 * removes the client's shared-memory regions once their calls have ended, and makes later calls
 * fail the same way at once (not retried).
 */
export function createDeviceClient(
  target: string,
  options: DeviceClientOptions = {},
): DeviceClient {
  if (typeof target !== "string" || target.length === 0)
    throw invalidOption("target", "a non-empty string such as host:port", target);
  assertDeviceClientOptions(options);
  const channel = { ...DEFAULT_CHANNEL, ...options.channel };
  const channelOptions: ChannelOptions = {
    "grpc.max_receive_message_length": channel.maxMessageBytes,
    "grpc.max_send_message_length": channel.maxMessageBytes,
    "grpc-node.flow_control_window": channel.flowControlWindowBytes,
    "grpc.keepalive_time_ms": channel.keepaliveTimeMs,
    "grpc.keepalive_timeout_ms": channel.keepaliveTimeoutMs,
    ...(options.tls?.serverNameOverride
      ? { "grpc.ssl_target_name_override": options.tls.serverNameOverride }
      : {}),
  };
  const tls = options.tls;
  const creds = tls
    ? grpcCredentials.createSsl(
        tls.caPem ? Buffer.from(tls.caPem) : null,
        tls.privateKeyPem ? Buffer.from(tls.privateKeyPem) : null,
        tls.certChainPem ? Buffer.from(tls.certChainPem) : null,
      )
    : grpcCredentials.createInsecure();
  const client = new Client(target, creds, channelOptions);
  const unaryTimeoutMs = options.defaultUnaryTimeoutMs ?? 30_000;
  let closed = false;
  // Calls in progress: `close` ends each of them.
  const running = new Set<AbortController>();
  const closedError = () =>
    new OpalError(Code.CANCELLED, `the client for ${target} was closed`, {
      reason: Reason.CANCELLED,
    });
  let capabilitiesRead: Promise<opal.device.v1.Capabilities.$Properties> | undefined;

  const metadata = () => {
    const m = new Metadata();
    if (options.token) m.set("authorization", `Bearer ${options.token}`);
    return m;
  };

  const assertOpen = () => {
    if (closed) throw closedError();
  };

  /** The signal of one call: the caller's signal, `timeoutMs` (validated), and `close`. */
  const callScope = (call: DriverCallOptions, timeoutMs: number | undefined): CallSignal => {
    const ended = new AbortController();
    const scope = createCallSignal({ signal: ended.signal, timeoutMs });
    const forward = () => ended.abort(call.signal?.reason);
    if (call.signal?.aborted) forward();
    else call.signal?.addEventListener("abort", forward, { once: true });
    running.add(ended);
    return {
      signal: scope.signal,
      dispose() {
        scope.dispose();
        call.signal?.removeEventListener("abort", forward);
        running.delete(ended);
      },
    };
  };

  function unary<M extends Method>(
    method: M,
    request: Req<M>,
    call: DriverCallOptions = {},
  ): Promise<Res<M>> {
    assertOpen();
    const scope = callScope(call, call.timeoutMs ?? unaryTimeoutMs);
    return new Promise<Res<M>>((resolve, reject) => {
      if (scope.signal.aborted) {
        scope.dispose();
        return reject(toAbortError(scope.signal.reason));
      }
      const pending = client.makeUnaryRequest(
        method.path,
        method.requestSerialize as (value: Req<M>) => Buffer,
        method.responseDeserialize as (value: Buffer) => Res<M>,
        request,
        metadata(),
        grpcOptions(call, unaryTimeoutMs),
        (error, response) => {
          scope.signal.removeEventListener("abort", onAbort);
          scope.dispose();
          if (error)
            reject(scope.signal.aborted ? toAbortError(scope.signal.reason) : toOpalError(error));
          else resolve(response as Res<M>);
        },
      );
      const onAbort = () => pending.cancel();
      scope.signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  async function* serverStream<M extends Method, E>(
    method: M,
    request: Req<M>,
    map: (message: Res<M>) => E,
    call: DriverCallOptions = {},
  ): AsyncGenerator<E> {
    assertOpen();
    const scope = callScope(call, call.timeoutMs);
    const stream: ClientReadableStream<Res<M>> = client.makeServerStreamRequest(
      method.path,
      method.requestSerialize as (value: Req<M>) => Buffer,
      method.responseDeserialize as (value: Buffer) => Res<M>,
      request,
      metadata(),
      grpcOptions(call),
    );
    const onAbort = () => stream.cancel();
    scope.signal.addEventListener("abort", onAbort, { once: true });
    let finished = false;
    try {
      // The stream's async iterator pulls: while we do not ask, HTTP/2 flow control holds the device.
      for await (const message of stream) yield map(message as Res<M>);
      finished = true;
    } catch (error) {
      if (scope.signal.aborted) throw toAbortError(scope.signal.reason);
      throw toOpalError(error);
    } finally {
      scope.signal.removeEventListener("abort", onAbort);
      scope.dispose();
      if (!finished) stream.cancel();
    }
  }

  /**
   * The device's capabilities, read once per client: one read shared by concurrent calls, so it
   * carries no caller's signal; each caller waits for it under its own signal. A failure fails the
   * call (and is read again next time) rather than falling back to a default: a retry with the
   * same `request_id` must carry the same body.
   */
  function capabilitiesOnce(call: DriverCallOptions) {
    capabilitiesRead ??= unary(D.getCapabilities, {}).then(
      (r) => r.capabilities ?? {},
      (error: unknown) => {
        capabilitiesRead = undefined;
        throw error;
      },
    );
    return untilAborted(capabilitiesRead, call.signal);
  }

  const sharedMemory = createSharedMemoryPlane(target, options, {
    capabilities: capabilitiesOnce,
    listModels: async (call) => (await unary(D.listModels, {}, call)).models.map(fromWireModel),
  });

  /** `maxChunkBytes` for a request that leaves it unset (see `DeviceClientOptions.chunkBytes`). */
  async function chunkBytesFor(requested: number | undefined, call: DriverCallOptions = {}) {
    if (requested || options.chunkBytes === "device") return requested ?? 0;
    const largest = (await capabilitiesOnce(call)).maxChunkBytes ?? 0;
    const cap = call.keepsChunks === false ? COPYING_CHUNK_BYTES : Number.POSITIVE_INFINITY;
    return Math.max(0, Math.min(largest, cap, channel.maxMessageBytes - MESSAGE_OVERHEAD));
  }

  return {
    target,
    driverApiVersion: DRIVER_API_VERSION,
    yieldsOwnedChunks: true,
    async getInfo(call): Promise<DeviceInfo> {
      return fromWireInfo(await unary(D.getInfo, {}, call));
    },
    async getCapabilities(call): Promise<DeviceCapabilities> {
      const response = await unary(D.getCapabilities, {}, call);
      return fromWireCapabilities(response.capabilities ?? {});
    },
    async probe(call): Promise<ProbeState> {
      return probeStateEnum.fromWire((await unary(D.probe, {}, call)).state, "state");
    },
    async listModels(call): Promise<readonly ModelInfo[]> {
      return (await unary(D.listModels, {}, call)).models.map(fromWireModel);
    },
    async loadModel(request, call = {}): Promise<LoadModelResult> {
      assertOpen();
      const timeoutMs = call.timeoutMs ?? unaryTimeoutMs * 10;
      return loadModel(client, metadata(), request, callScope(call, timeoutMs), timeoutMs);
    },
    async unloadModel(modelId, call) {
      return { wasLoaded: (await unary(D.unloadModel, { modelId }, call)).wasLoaded };
    },
    async *prefill(request, call = {}): AsyncIterable<PrefillEvent> {
      const maxChunkBytes = await chunkBytesFor(request.maxChunkBytes, call);
      const wire = toWirePrefillRequest({ ...request, maxChunkBytes });
      const inline = () => serverStream(D.prefill, wire, fromWirePrefillEvent, call);
      const region = await sharedMemory.regionFor(request, call);
      if (!region) {
        yield* inline();
        return;
      }
      yield* sharedMemory.stream(
        region,
        call,
        (offer, signal) =>
          serverStream(D.prefill, { ...wire, dataPlane: { sharedMemory: offer } }, (m) => m, {
            ...call,
            signal,
          }),
        inline,
      );
    },
    async *fetchKv(request, call): AsyncIterable<FetchEvent> {
      const maxChunkBytes = await chunkBytesFor(request.maxChunkBytes, call);
      const wire = toWireFetchRequest({ ...request, maxChunkBytes });
      yield* serverStream(D.fetchKv, wire, fromWireFetchEvent, call);
    },
    async releaseKv(kvHandle, call) {
      return { released: (await unary(D.releaseKv, { kvHandle }, call)).released };
    },
    watchTelemetry(request, call): AsyncIterable<TelemetrySnapshot> {
      return serverStream(
        D.watchTelemetry,
        { intervalMs: request.intervalMs ?? 0 },
        (m) => fromWireTelemetry(m.snapshot ?? {}),
        call,
      );
    },
    async close() {
      closed = true;
      const error = closedError();
      for (const call of running) call.abort(error);
      sharedMemory.close();
      client.close();
    },
  };
}

/** LoadModel (client streaming) under `scope`, which it disposes; `timeoutMs` is its deadline. */
async function loadModel(
  client: Client,
  metadata: Metadata,
  request: Parameters<PrefillDriver["loadModel"]>[0],
  scope: CallSignal,
  timeoutMs: number,
): Promise<LoadModelResult> {
  try {
    return await new Promise<LoadModelResult>((resolve, reject) => {
      // Once the call has ended (the device answered early, or failed), the upload stops: it no
      // longer waits for a `drain` that will not come, and the weights iterator is closed.
      let ended = false;
      let onEnded = () => {};
      const callEnded = new Promise<void>((settle) => {
        onEnded = settle;
      });
      const stream = client.makeClientStreamRequest(
        D.loadModel.path,
        D.loadModel.requestSerialize,
        D.loadModel.responseDeserialize,
        metadata,
        grpcOptions({ timeoutMs }),
        (error, response) => {
          ended = true;
          onEnded();
          if (error)
            reject(scope.signal.aborted ? toAbortError(scope.signal.reason) : toOpalError(error));
          else
            resolve({
              model: fromWireModel(response!.model ?? {}),
              alreadyLoaded: response!.alreadyLoaded,
            });
        },
      );
      scope.signal.addEventListener("abort", () => stream.cancel(), { once: true });
      (async () => {
        stream.write({
          header: {
            modelId: request.modelId,
            configJson: request.configJson,
            weightsByteLength: request.weightsByteLength ?? 0,
            weightsSha256: request.weightsSha256 ?? "",
            deviceLocalRef: request.deviceLocalRef ?? "",
          },
        });
        for await (const chunk of request.weights ?? []) {
          if (ended) break;
          if (!stream.write({ weightsChunk: chunk })) {
            let onDrain = () => {};
            await Promise.race([
              new Promise<void>((drained) => {
                onDrain = drained;
                stream.once("drain", onDrain);
              }),
              callEnded,
            ]);
            stream.removeListener("drain", onDrain);
          }
        }
        if (!ended) stream.end();
      })().catch((error) => {
        stream.cancel();
        reject(OpalError.from(error));
      });
    });
  } finally {
    scope.dispose();
  }
}

function grpcOptions(call: DriverCallOptions, fallbackTimeoutMs?: number): GrpcCallOptions {
  const timeoutMs = call.timeoutMs ?? fallbackTimeoutMs;
  return timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs };
}

/**
 * The `OpalError` for a failed call the caller did not cancel. A CANCELLED status then means the
 * device or the connection reset the stream (a dropped connection, a forced shutdown): reported as
 * UNAVAILABLE, which callers retry, rather than as a cancellation nobody asked for.
 */
function toOpalError(error: unknown): OpalError {
  if (error instanceof OpalError) return error;
  const status = error as Partial<ServiceError>;
  if (status.code === Code.CANCELLED) {
    return new OpalError(
      Code.UNAVAILABLE,
      `the device reset the call: ${status.details ?? "cancelled"}`,
      {
        reason: Reason.DEVICE_FAULT,
        cause: error,
      },
    );
  }
  if (typeof status.code === "number") return fromGrpcStatus(status);
  return OpalError.from(error);
}
