import type { PrefillDriver } from "@opal/driver";
import type { DeviceClientOptions } from "./client-options";

/** How a pool picks a device for a prefill. */
export type RoutingPolicy = "round-robin" | "least-loaded" | "prefix-affinity";

/** Options of {@link createDevicePool}; every field documents its default. */
export interface DevicePoolOptions {
  /** Default "prefix-affinity": requests sharing a prefix go to the device that computed it. */
  readonly routing?: RoutingPolicy;
  /** Prefills in flight per device before it is skipped; default 8. */
  readonly maxInFlightPerDevice?: number;
  /** Consecutive failures that take a device out; default 3. */
  readonly failureThreshold?: number;
  /** How long a failing device stays out before a probe may bring it back, in ms; default 5,000. */
  readonly openMs?: number;
  /**
   * Health watching, default `{ intervalMs: 1000 }`: the pool reads each device's telemetry every
   * `intervalMs` (its load steers least-loaded routing; a `critical` condition takes the device
   * out until a snapshot without one or a ready Probe), and probes each device taken out by failures once `openMs`
   * has passed, bringing it back when it answers ready. `false`: neither (a device taken out is
   * then tried again by a prefill after `openMs`, or brought back by `probe()`).
   */
  readonly health?: { readonly intervalMs?: number } | false;
  /**
   * How often `dns:///` targets are resolved again, in ms; default 30,000; 0: only at creation.
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
 * that failed it. KV handles carry their device, so FetchKv and ReleaseKv reach the right one.
 */
export interface DevicePool extends PrefillDriver {
  readonly devices: readonly PoolDevice[];
}
