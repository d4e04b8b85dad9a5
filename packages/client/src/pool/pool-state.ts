import type { CallRegistry } from "@opal/core";
import type { PrefillDriver } from "@opal/driver";
import type { BreakerSettings } from "./circuit-breaker";
import type { DevicePoolOptions, RoutingPolicy } from "./device-pool-options";
import type { PoolMember } from "./pool-member";

/** A pool's options with their defaults applied (see {@link DevicePoolOptions}). */
export interface PoolSettings extends BreakerSettings {
  readonly routing: RoutingPolicy;
  readonly maxInFlightPerDevice: number;
  /** Health watching and open-circuit probing interval, in ms; 0: off. */
  readonly healthMs: number;
  /** Interval of `dns:///` lookups, in ms; 0: only at creation. */
  readonly dnsRefreshMs: number;
}

/** Everything a pool knows, as plain state read and changed by the pool's free functions. */
export interface PoolState {
  /** The devices, in the order they joined; DNS refresh adds and retires some. */
  readonly members: PoolMember[];
  readonly settings: PoolSettings;
  /** Creates the client of one target. */
  readonly connect: (target: string) => PrefillDriver;
  /** The pool's watches (health, probes, timers): closing the pool aborts them all. */
  readonly watches: CallRegistry;
  /** Prefix key → target of the device that last completed a prefill with that prefix. */
  readonly affinity: Map<string, string>;
  /** Request id → target of the device that failed it last (bounded). */
  readonly failedFor: Map<string, string>;
  /** Rotation counter of round-robin and least-loaded ties. */
  turn: number;
}

/** `options` with their defaults applied. */
export function toPoolSettings(options: DevicePoolOptions): PoolSettings {
  return {
    routing: options.routing ?? "prefix-affinity",
    maxInFlightPerDevice: options.maxInFlightPerDevice ?? 8,
    failureThreshold: options.failureThreshold ?? 3,
    openMs: options.openMs ?? 5_000,
    healthMs: options.health === false ? 0 : (options.health?.intervalMs ?? 1_000),
    dnsRefreshMs: options.dnsRefreshMs ?? 30_000,
  };
}
