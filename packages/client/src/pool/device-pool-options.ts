import { MAX_TIMER_MS } from "@opal/core";
import type { DriverCallOptions, PrefillDriver, PrefillEvent, PrefillRequest } from "@opal/driver";
import {
  assertDeviceClientOptions,
  type DeviceClientOptions,
} from "../device-client/client-options";
import { assertIntegerOption, assertOneOfOption } from "../options/assert-option";
import { invalidOption } from "../options/invalid-option";

/** How a pool picks a device for a prefill. */
export type RoutingPolicy = "round-robin" | "least-loaded" | "prefix-affinity";

/** Options of {@link createDevicePool}; every field documents its default. */
export interface DevicePoolOptions {
  /** Default "prefix-affinity": requests sharing a prefix go to the device that computed it. */
  readonly routing?: RoutingPolicy;
  /** Prefills in flight per device before it is skipped, an integer >= 1; default 8. */
  readonly maxInFlightPerDevice?: number;
  /** Consecutive failures that take a device out, an integer >= 1; default 3. */
  readonly failureThreshold?: number;
  /**
   * How long a failing device stays out before a probe may bring it back, in ms (an integer >= 0);
   * default 5,000.
   */
  readonly openMs?: number;
  /**
   * Health watching, default `{ intervalMs: 1000 }`: the pool reads each device's telemetry every
   * `intervalMs` (an integer from 1 to 2,147,483,647; its load steers least-loaded routing; a
   * `critical` condition takes the device out until a snapshot without one or a ready Probe), and
   * probes each device taken out by failures once `openMs` has passed, bringing it back when it
   * answers ready. `false`: neither (a device taken out is
   * then tried again by a prefill after `openMs`, or brought back by `probe()`).
   */
  readonly health?: { readonly intervalMs?: number } | false;
  /**
   * How often `dns:///` targets are resolved again, in ms (an integer up to 2,147,483,647); default
   * 30,000; 0: only at creation.
   * Addresses that appear join the pool (they get no `loadModel` of earlier calls: preload models,
   * or load them by device). A device whose address is gone takes no new prefills; it is closed
   * once nothing runs on it and the leases it granted have ended (at most an hour), so its KV
   * handles reach it until then. A failed lookup, or one with no address, changes nothing.
   */
  readonly dnsRefreshMs?: number;
  /** Options of every device client (token, TLS, channel settings). */
  readonly client?: DeviceClientOptions;
  /** Creates the client of one target; default `createDeviceClient` (tests inject drivers). */
  readonly connect?: (target: string) => PrefillDriver;
}

/** A pool member as the pool sees it. */
export interface PoolDevice {
  readonly target: string;
  /** "closed": in service; "open": taken out after failures; "half-open": on probation. */
  readonly circuit: "closed" | "open" | "half-open";
  readonly inFlight: number;
  readonly prefills: number;
  readonly failures: number;
  /** Prefills queued or running on the device for all its clients (telemetry); unknown: undefined. */
  readonly reportedLoad: number | undefined;
  /** Names of the device's critical health conditions (telemetry); while any, it is skipped. */
  readonly critical: readonly string[];
}

/**
 * Several devices behind one `PrefillDriver`: prefills are routed by the policy among devices in
 * service and under their in-flight limit; a device that fails `failureThreshold` times in a row is
 * taken out for `openMs`, then probed back in; one whose telemetry reports a `critical` condition
 * is skipped while it does (see {@link DevicePoolOptions.health}). A retry of the same `request_id` avoids the device
 * that failed it, or whose stream its reader left before `completed` (a chunk that failed its
 * CRC, a sink that failed); only the device's own failures count towards `failureThreshold`.
 * Prefix affinity keys on the model as well as the salted block hashes, as device prefix caches
 * do. KV handles carry their device, so FetchKv and ReleaseKv reach the right one. `loadModel`
 * loads on every device; uploaded `weights` are read once and streamed to each, at the pace of the
 * slowest.
 */
export interface DevicePool extends PrefillDriver {
  readonly devices: readonly PoolDevice[];
  /** Routes a prefill to a device; a well-formed `PrefillRequest`, as a {@link DeviceClient} takes. */
  prefill(request: PrefillRequest, options?: DriverCallOptions): AsyncIterable<PrefillEvent>;
  /**
   * The target of the device holding `kvHandle`, a handle this pool's `prefill` returned (a run's
   * `result.kvHandle`); undefined for any other string.
   */
  targetOf(kvHandle: string): string | undefined;
}

/**
 * Checks the arguments of `createDevicePool`: `targets` an array of non-empty strings, every
 * option of its type and in range (each field above states it), `client` as `createDeviceClient`
 * checks it. Throws INVALID_ARGUMENT INVALID_FIELD naming the field, what it expects and what it
 * got; `undefined` fields take their defaults.
 */
export function assertDevicePoolOptions(targets: unknown, options: DevicePoolOptions): void {
  if (!Array.isArray(targets)) throw invalidOption("targets", "an array of targets", targets);
  targets.forEach((target, i) => {
    if (typeof target !== "string" || target.length === 0)
      throw invalidOption(`targets[${i}]`, "a non-empty string such as host:port", target);
  });
  if (options.routing !== undefined)
    assertOneOfOption("routing", options.routing, [
      "round-robin",
      "least-loaded",
      "prefix-affinity",
    ]);
  if (options.maxInFlightPerDevice !== undefined)
    assertIntegerOption("maxInFlightPerDevice", options.maxInFlightPerDevice, 1);
  if (options.failureThreshold !== undefined)
    assertIntegerOption("failureThreshold", options.failureThreshold, 1);
  if (options.openMs !== undefined) assertIntegerOption("openMs", options.openMs, 0);
  const health: unknown = options.health;
  if (health !== undefined && health !== false) {
    if (typeof health !== "object" || health === null)
      throw invalidOption("health", "false or { intervalMs }", health);
    const { intervalMs } = health as { intervalMs?: unknown };
    if (intervalMs !== undefined)
      assertIntegerOption("health.intervalMs", intervalMs, 1, MAX_TIMER_MS);
  }
  if (options.dnsRefreshMs !== undefined)
    assertIntegerOption("dnsRefreshMs", options.dnsRefreshMs, 0, MAX_TIMER_MS);
  if (options.connect !== undefined && typeof options.connect !== "function")
    throw invalidOption("connect", "a function", options.connect);
  // Checked here, not when the first device connects: a bad option fails the pool's creation.
  if (options.client !== undefined) assertDeviceClientOptions(options.client, "client.");
}
