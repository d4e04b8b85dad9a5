import type { DeviceCapabilities, DeviceSlots, PrefillDriver } from "@opal/driver";
import type { DeviceCallContext } from "./device-call-context";
import type { ServerMetrics } from "./server-metrics";
import type { TenantLimiter } from "./tenant-limiter";
import type { UploadLimiter } from "./upload-limiter";

/** Everything the device service's handlers share. */
export interface HandlerContext {
  readonly driver: PrefillDriver;
  /** The driver's capabilities, read once at start (stable for one device version). */
  readonly capabilities: DeviceCapabilities;
  /** The tenants' rate and concurrency limits (`limits`). */
  readonly limiter: TenantLimiter;
  readonly metrics: ServerMetrics | undefined;
  /** The host implements push for a driver that does not declare it. */
  readonly hostPush: boolean;
  /** Prefill calls in progress (PF-7). */
  readonly running: RunningPrefills;
  /** Push targets the operator allows (PS-1); undefined: any. */
  readonly pushTargets: ReadonlySet<string> | undefined;
  /** How long a stream may wait for its caller to read before it ends (`limits.streamStallTimeoutMs`). */
  readonly stallTimeoutMs: number;
  /** LoadModel uploads in progress (`limits.maxConcurrentUploads`, `maxUploadBytesInFlight`). */
  readonly uploads: UploadLimiter;
  /** How long an upload may send nothing before it fails (`limits.uploadIdleTimeoutMs`). */
  readonly uploadIdleTimeoutMs: number;
  /** The host offers the shared-memory data plane (PF-43). */
  readonly sharedMemory: boolean;
  /**
   * The device's prefill slots and queue, held by the host for a driver that does not queue
   * prefills itself (`PrefillDriver.queuesPrefills`); undefined when it does.
   */
  readonly slots: DeviceSlots | undefined;
}

/** Prefill calls in progress, by tenant and request id (PF-7). */
export type RunningPrefills = Map<string, RunningPrefill>;

/** A prefill call in progress. */
export interface RunningPrefill {
  /** `prefillBodyDigest` of the request (its body: without `request_id`, `data_plane` and `priority`). */
  readonly body: string;
  readonly scope: DeviceCallContext;
  /** Gives the call's tenant and device slots back (idempotent); a no-op until it is admitted. */
  releaseSlot: () => void;
}
