import type { PrefillDriver } from "@opal/driver";
import { type Breaker, closeCircuit, createBreaker } from "./circuit-breaker";
import type { PoolDevice } from "./device-pool-options";

/** Stops what watches one member: its signal aborts on `stop()` or when the pool closes. */
export interface MemberWatch {
  readonly signal: AbortSignal;
  stop(): void;
}

/** One device of a pool: plain state read and changed by the pool's free functions. */
export interface PoolMember extends Breaker {
  readonly target: string;
  readonly driver: PrefillDriver;
  /** Prefills running on the device through this pool. */
  inFlight: number;
  /** Prefills routed to the device so far. */
  prefills: number;
  /** Prefills the device reports for all its clients (telemetry); unknown: undefined. */
  reportedLoad: number | undefined;
  /** The device's critical health conditions (telemetry); while any, it takes no prefill. */
  critical: readonly string[];
  /** The `dns:///` target this address came from; undefined for a listed target. */
  readonly source: string | undefined;
  /** No longer resolved: takes no new prefills, closed once idle and its leases have ended. */
  removed: boolean;
  /** Calls of any kind running on the device (prefills, fetches, releases). */
  busy: number;
  /** Latest lease the device granted, ms since the Unix epoch (0: none). */
  leaseUntilMs: number;
  /** Stops this member's health watching and probes. */
  readonly watch: MemberWatch;
}

/** A member in service for `target` (from `source`, undefined for a listed target). */
export function createPoolMember(
  target: string,
  driver: PrefillDriver,
  source: string | undefined,
  watch: MemberWatch,
): PoolMember {
  return {
    target,
    driver,
    ...createBreaker(),
    inFlight: 0,
    prefills: 0,
    reportedLoad: undefined,
    critical: [],
    source,
    removed: false,
    busy: 0,
    leaseUntilMs: 0,
    watch,
  };
}

/** A device that answered Probe ready: in service, its failures and critical conditions cleared. */
export function markBackInService(member: PoolMember): void {
  closeCircuit(member);
  member.critical = []; // a device with a critical condition fails Probe (ID-10)
}

/** The member as `DevicePool.devices` shows it (a snapshot). */
export function toPoolDevice(member: PoolMember): PoolDevice {
  const { target, circuit, inFlight, prefills, failures, reportedLoad, critical } = member;
  return { target, circuit, inFlight, prefills, failures, reportedLoad, critical };
}
