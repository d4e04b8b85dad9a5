import { Code, OpalError, Reason } from "@opal/core";
import {
  type DeviceCapabilities,
  type DeviceInfo,
  DRIVER_API_VERSION,
  type DriverCallOptions,
  type ModelInfo,
  type PrefillDriver,
  type PrefillEvent,
  type PrefillRequest,
  type ProbeState,
  type TelemetrySnapshot,
} from "@opal/driver";
import {
  createGrpcChannel,
  createGrpcClient,
  DeviceServiceDefinition,
  fromWireCapabilities,
  fromWireInfo,
  fromWireModel,
  fromWireTelemetry,
  type GrpcConnectionOptions,
  probeStateEnum,
} from "@opal/protocol";
import { invalidOption } from "../options/invalid-option";
import { capabilitiesOnce } from "./capabilities-once";
import { assertDeviceClientOptions, type DeviceClientOptions } from "./client-options";
import { createSharedMemoryPlane } from "./create-shared-memory-plane";
import { deviceCall, deviceStream } from "./device-call";
import type { DeviceClientState } from "./device-client-state";
import { loadModel } from "./load-model";
import { fetchKvFrom, prefillThrough } from "./prefill-through";
import { versionCheckedChannel } from "./version-checked-channel";

/** A remote device: the {@link PrefillDriver} interface over gRPC. */
export interface DeviceClient extends PrefillDriver {
  /** The target this client connects to. */
  readonly target: string;
  /**
   * Streams a prefill from the device. Takes a well-formed `PrefillRequest`, not one as a device
   * receives it: the wire encoder refuses an enum this version does not know (INVALID_ARGUMENT)
   * before anything is sent.
   */
  prefill(request: PrefillRequest, options?: DriverCallOptions): AsyncIterable<PrefillEvent>;
}

/** Default channel settings (see {@link DeviceClientOptions.channel}). */
export const DEFAULT_CHANNEL = {
  flowControlWindowBytes: 16 * 1024 * 1024,
  maxMessageBytes: 64 * 1024 * 1024,
  keepaliveTimeMs: 30_000,
  keepaliveTimeoutMs: 10_000,
} as const;

/**
 * Connects to a device at `target` (`host:port`, or any grpc-js target such as `dns:///name:port`).
 * The connection is made lazily on the first call. The first call other than `getInfo` reads GetInfo
 * first, once per client (a `getInfo()` made before serves as that read): a device of another major
 * protocol version fails every such call with FAILED_PRECONDITION PROTOCOL_VERSION_UNSUPPORTED
 * (`VER-2`). Every failure is an `OpalError` with the device's code, reason and retry delay; no grpc-js type appears in the result. Bad options throw
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
  const unaryTimeoutMs = options.defaultUnaryTimeoutMs ?? 30_000;
  const version = versionCheckedChannel(
    createGrpcChannel(target, connectionOptions(options)),
    unaryTimeoutMs,
  );
  const state: DeviceClientState = {
    target,
    options,
    rpc: createGrpcClient(DeviceServiceDefinition, version.channel),
    maxMessageBytes: channel.maxMessageBytes,
    unaryTimeoutMs,
    capabilitiesRead: undefined,
  };
  const { rpc } = state;
  const sharedMemory = createSharedMemoryPlane(target, options, {
    capabilities: (call) => capabilitiesOnce(state, call),
    listModels: async (call) =>
      (await deviceCall(state, (o) => rpc.listModels({}, o), call)).models.map(fromWireModel),
  });
  return {
    target,
    driverApiVersion: DRIVER_API_VERSION,
    yieldsOwnedChunks: true,
    async getInfo(call): Promise<DeviceInfo> {
      const response = await deviceCall(state, (o) => rpc.getInfo({}, o), call);
      version.settle(response.protocolVersion);
      return fromWireInfo(response);
    },
    async getCapabilities(call): Promise<DeviceCapabilities> {
      const response = await deviceCall(state, (o) => rpc.getCapabilities({}, o), call);
      return fromWireCapabilities(response.capabilities ?? {});
    },
    async probe(call): Promise<ProbeState> {
      const response = await deviceCall(state, (o) => rpc.probe({}, o), call);
      return probeStateEnum.fromWire(response.state, "state");
    },
    async listModels(call): Promise<readonly ModelInfo[]> {
      return (await deviceCall(state, (o) => rpc.listModels({}, o), call)).models.map(
        fromWireModel,
      );
    },
    loadModel: (request, call) => loadModel(state, request, call),
    async unloadModel(modelId, call) {
      const response = await deviceCall(state, (o) => rpc.unloadModel({ modelId }, o), call);
      return { wasLoaded: response.wasLoaded };
    },
    prefill: (request, call) => prefillThrough(state, sharedMemory, request, call),
    fetchKv: (request, call) => fetchKvFrom(state, request, call),
    async releaseKv(kvHandle, call) {
      const response = await deviceCall(state, (o) => rpc.releaseKv({ kvHandle }, o), call);
      return { released: response.released };
    },
    watchTelemetry(request, call): AsyncIterable<TelemetrySnapshot> {
      return deviceStream(
        (o) => rpc.watchTelemetry({ intervalMs: request.intervalMs ?? 0 }, o),
        (m) => fromWireTelemetry(m.snapshot ?? {}),
        call,
      );
    },
    async close() {
      rpc.channel.close(
        new OpalError(Code.CANCELLED, `the client for ${target} was closed`, {
          reason: Reason.CANCELLED,
        }),
      );
      sharedMemory.close();
    },
  };
}

/** The connection of a device client: its TLS, token and channel settings (defaults filled in). */
function connectionOptions(options: DeviceClientOptions): GrpcConnectionOptions {
  const channel = { ...DEFAULT_CHANNEL, ...options.channel };
  return {
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.token ? { token: options.token } : {}),
    channel: {
      maxReceiveMessageBytes: channel.maxMessageBytes,
      maxSendMessageBytes: channel.maxMessageBytes,
      flowControlWindowBytes: channel.flowControlWindowBytes,
      keepaliveTimeMs: channel.keepaliveTimeMs,
      keepaliveTimeoutMs: channel.keepaliveTimeoutMs,
    },
  };
}
