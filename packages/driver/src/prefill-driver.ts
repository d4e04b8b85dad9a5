import type {
  DeviceCapabilities,
  DeviceInfo,
  FetchKvRequest,
  LoadModelResult,
  ModelInfo,
  ProbeState,
  ReceivedPrefillRequest,
  TelemetrySnapshot,
} from "./gen/messages";
import type { LoadModelRequest } from "./load-model-request";
import type { FetchEvent, PrefillEvent } from "./prefill-event";

/**
 * Version of the {@link PrefillDriver} interface. A host refuses a driver whose
 * `driverApiVersion` differs; additions that old drivers can ignore do not change it.
 */
export const DRIVER_API_VERSION = 1;

/** Per-call options every driver method accepts. */
export interface DriverCallOptions {
  /**
   * Aborted when the caller cancels or its deadline passes: the driver MUST stop work, free the
   * resources of the call, and end with the signal's reason (an `OpalError`).
   */
  readonly signal?: AbortSignal;
  /** Deadline relative to the start of the call, in milliseconds. */
  readonly timeoutMs?: number;
  /**
   * The caller's tenant, set by the server host from the authenticated token; absent means the
   * default tenant. Caches, handles and prefix-cache entries never cross tenants.
   */
  readonly tenant?: string;
  /**
   * A hint for `prefill` and `fetchKv` from a caller that copies each chunk's bytes and drops the
   * chunk (false), or may keep chunks as they are (true; the default). A driver that yields owned
   * chunks may then choose how it allocates them: small, short-lived buffers for a copying caller,
   * fewer and larger ones otherwise (the SDK's device client asks a device for chunks of at most
   * 2 MiB for a copying caller when the request leaves the size open). Never changes the bytes a
   * driver yields or their order, only how they are cut into chunks and allocated.
   */
  readonly keepsChunks?: boolean;
  /**
   * `prefill` only: the `prefillBodyDigest` of the request as its caller sent it, set by the server
   * host when the request it passes on differs (it strips a push target it handles itself). A
   * driver that remembers request bodies (`PF-5`..`PF-7`) uses it instead of digesting the request
   * it received, so that it and the host agree on what "the same body" is.
   */
  readonly bodyDigest?: string;
}

/**
 * The vendor contract: one prefill device. Implemented in process (a vendor's code, the mock) and
 * remotely (the client's gRPC device), so every test of a driver runs against both. Every failure
 * is an `OpalError` carrying a protocol reason (`Reason` in `@opal/core`).
 *
 * Streams are `AsyncIterable`s: the consumer pulls, so a slow consumer slows the device instead of
 * growing memory; stopping iteration early (break/return) cancels the call.
 */
export interface PrefillDriver {
  /** Must equal {@link DRIVER_API_VERSION}. */
  readonly driverApiVersion: number;
  /**
   * True when the chunk `data` that `prefill` and `fetchKv` yield belong to the consumer: nothing
   * else holds, reuses or writes them, so they may be kept without copying (a remote device's
   * received messages). Absent or false: views are valid only until the next event.
   */
  readonly yieldsOwnedChunks?: boolean;
  /**
   * True when the driver admits prefills itself: it holds `maxConcurrentPrefills` slots and a queue
   * of `maxQueuedPrefills`, answers DEVICE_BUSY, and frees a slot when a call ends, is cancelled or
   * its deadline passes; it SHOULD give a freed slot to the waiting request with the lowest
   * `priority`, equal priorities in arrival order (`PF-50`), as
   * `createDeviceSlots(...).acquire(signal, request.priority)` does. Absent or false (the usual
   * case): the server host does all of that for it, in that order, and the driver's `prefill` is
   * called only once the call holds a slot.
   */
  readonly queuesPrefills?: boolean;
  getInfo(options?: DriverCallOptions): Promise<DeviceInfo>;
  getCapabilities(options?: DriverCallOptions): Promise<DeviceCapabilities>;
  /** Resolves with the readiness; rejects when the device is unhealthy. */
  probe(options?: DriverCallOptions): Promise<ProbeState>;
  listModels(options?: DriverCallOptions): Promise<readonly ModelInfo[]>;
  /** Idempotent on the model fingerprint: same id and fingerprint → `alreadyLoaded`. */
  loadModel(request: LoadModelRequest, options?: DriverCallOptions): Promise<LoadModelResult>;
  /** Idempotent: `wasLoaded` is false when no such model was loaded. */
  unloadModel(
    modelId: string,
    options?: DriverCallOptions,
  ): Promise<{ readonly wasLoaded: boolean }>;
  /**
   * Computes a prefill: one "accepted", chunks in canonical order (layer 0 first), one
   * "completed". Chunk `data` views stay valid until the consumer asks for the next event.
   * `request` is as received, not yet checked: the server host passes what it decoded from the
   * wire, whose enums may be UNSPECIFIED or unknown and whose `kv_format` may be absent. A driver
   * checks it first, with `validatePrefillRequest` (which reports each problem at its `PF-1`
   * place), and works with the `PrefillRequest` that returns.
   */
  prefill(
    request: ReceivedPrefillRequest,
    options?: DriverCallOptions,
  ): AsyncIterable<PrefillEvent>;
  /** Re-streams a retained cache from a position. Requires `features.resume`. */
  fetchKv(request: FetchKvRequest, options?: DriverCallOptions): AsyncIterable<FetchEvent>;
  /** Idempotent: `released` is false for unknown, expired or foreign handles. */
  releaseKv(kvHandle: string, options?: DriverCallOptions): Promise<{ readonly released: boolean }>;
  /** Full snapshots every `intervalMs` (default 1000) until the signal aborts. */
  watchTelemetry(
    request: { readonly intervalMs?: number },
    options?: DriverCallOptions,
  ): AsyncIterable<TelemetrySnapshot>;
  /** Releases the driver's resources; further calls fail with UNAVAILABLE. */
  close(): Promise<void>;
}
