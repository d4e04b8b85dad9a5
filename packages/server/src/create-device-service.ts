import { Code, OpalError, Reason } from "@opal/core";
import { createDeviceSlots, type DeviceCapabilities, type PrefillDriver } from "@opal/driver";
import {
  createServiceImplementation,
  DEFAULT_STREAM_STALL_TIMEOUT_MS,
  DeviceServiceDefinition,
  encodeChunkResponse,
  type GrpcService,
  hasSharedMemory,
  SHARED_MEMORY_DIRECTORY,
} from "@opal/protocol";
import type { Logger } from "pino";
import { createAuthenticator } from "./caller-auth";
import type { DeviceCallContext } from "./device-call-context";
import type { DeviceCalls } from "./device-calls";
import { createDeviceHandlers } from "./device-handlers";
import { deviceInterceptors } from "./device-interceptors";
import type { ServerMetrics } from "./server-metrics";
import type { DeviceServerOptions } from "./server-options";
import { createTenantLimiter } from "./tenant-limiter";
import { createUploadLimiter } from "./upload-limiter";

/**
 * The device service as served: the KV streams' hot path is encoded by hand, so a response carrying
 * only a chunk is one allocation and one copy (`encodeChunkResponse`); others use protobufjs.
 */
const STREAMING_DEFINITION = {
  ...DeviceServiceDefinition,
  prefill: withChunkEncoding(DeviceServiceDefinition.prefill),
  fetchKv: withChunkEncoding(DeviceServiceDefinition.fetchKv),
};

/** Default of `limits.maxConcurrentUploads`. */
const DEFAULT_CONCURRENT_UPLOADS = 2;
/** Default of `limits.uploadIdleTimeoutMs`, in ms. */
const DEFAULT_UPLOAD_IDLE_TIMEOUT_MS = 30_000;

/** What the device service shares with the rest of its server. */
export interface DeviceServiceHost {
  readonly calls: DeviceCalls;
  readonly metrics: ServerMetrics | undefined;
  readonly logger: Logger;
}

/**
 * `opal.device.v1.DeviceService` over `driver`, behind the device's interceptors (metrics, then
 * authentication, shutdown refusal and rate limits in `PF-1` order). Throws INVALID_ARGUMENT for
 * invalid `limits`, and for shared memory on a host without it.
 */
export function createDeviceService(
  driver: PrefillDriver,
  capabilities: DeviceCapabilities,
  options: DeviceServerOptions,
  host: DeviceServiceHost,
): GrpcService {
  const limits = options.limits;
  const authenticate = createAuthenticator(options.auth, { tls: options.tls !== undefined });
  const limiter = createTenantLimiter(limits);
  const stallTimeoutMs = limits?.streamStallTimeoutMs ?? DEFAULT_STREAM_STALL_TIMEOUT_MS;
  const handlers = createDeviceHandlers({
    driver,
    capabilities,
    limiter,
    metrics: host.metrics,
    hostPush: (options.push ?? true) && !capabilities.features.push,
    running: new Map(),
    pushTargets: options.pushTargets ? new Set(options.pushTargets) : undefined,
    sharedMemory: sharedMemoryEnabled(options.sharedMemory),
    slots: driver.queuesPrefills
      ? undefined
      : createDeviceSlots(capabilities.maxConcurrentPrefills, capabilities.maxQueuedPrefills),
    stallTimeoutMs,
    uploads: createUploadLimiter(
      limits?.maxConcurrentUploads ?? DEFAULT_CONCURRENT_UPLOADS,
      limits?.maxUploadBytesInFlight ?? capabilities.maxModelBytes,
    ),
    uploadIdleTimeoutMs: limits?.uploadIdleTimeoutMs ?? DEFAULT_UPLOAD_IDLE_TIMEOUT_MS,
  });
  const interceptors = deviceInterceptors({
    authenticate,
    limiter,
    calls: host.calls,
    metrics: host.metrics,
    logger: host.logger,
    // GetInfo is answered while shutting down (errors.md), so clients can still identify the device.
    servedWhileShuttingDown: new Set(["GetInfo"]),
    watches: new Set(["WatchTelemetry"]),
  });
  return createServiceImplementation<typeof STREAMING_DEFINITION, DeviceCallContext>(
    STREAMING_DEFINITION,
    handlers,
    { interceptors, streamStallTimeoutMs: stallTimeoutMs },
  );
}

/** `method` with responses that carry only a chunk encoded by `encodeChunkResponse`. */
function withChunkEncoding<M extends { responseSerialize: (message: never) => Buffer }>(
  method: M,
): M {
  const serialize = method.responseSerialize as (message: unknown) => Buffer;
  return {
    ...method,
    responseSerialize: (message: unknown) =>
      encodeChunkResponse(message as never) ?? serialize(message),
  };
}

/** Whether the shared-memory data plane is on; asking for it where it cannot work is an error. */
function sharedMemoryEnabled(wanted: boolean | undefined): boolean {
  if (!wanted) return false;
  if (!hasSharedMemory()) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `sharedMemory: needs ${SHARED_MEMORY_DIRECTORY} (Linux POSIX shared memory), which this host lacks`,
      { reason: Reason.INVALID_FIELD },
    );
  }
  return true;
}
