import { Code, OpalError, Reason } from "@opal/core";
import type { CircuitState } from "./circuit-breaker";
import type { RoutingPolicy } from "./device-pool-options";

/** What routing reads of a pool member. */
export interface RoutableDevice {
  readonly target: string;
  readonly circuit: CircuitState;
  readonly inFlight: number;
  readonly reportedLoad: number | undefined;
  readonly critical: readonly string[];
  readonly removed: boolean;
}

/** What routing reads of a prefill. */
export interface RouteRequest {
  /** The device that failed this request last: avoided while another is available. */
  readonly avoidTarget: string | undefined;
  /** The request's prefix keys (see `prefixKeysOf`), shortest prefix first; [] without affinity. */
  readonly prefixKeys: readonly string[];
}

/** A pool's routing settings and state at one pick. */
export interface Routing {
  readonly policy: RoutingPolicy;
  /** Prefills in flight per device before it is skipped, >= 1. */
  readonly maxInFlightPerDevice: number;
  /** Prefix key → target of the device that last completed a prefill with that prefix. */
  readonly affinity: ReadonlyMap<string, string>;
  /** Rotation counter of round-robin and of least-loaded ties. */
  readonly turn: number;
}

/** The chosen device, and the rotation counter to use for the next pick. */
export interface Picked<M> {
  readonly member: M;
  readonly turn: number;
}

/**
 * True when `member` takes a new prefill: in the pool, circuit not open, no critical condition,
 * under `maxInFlightPerDevice`, and, on probation (half-open), nothing in flight (one trial at a
 * time). A breaker whose open time has passed must be moved to half-open first (`admitTrial`).
 */
export function isAvailable(member: RoutableDevice, maxInFlightPerDevice: number): boolean {
  if (member.removed || member.circuit === "open" || member.critical.length > 0) return false;
  if (member.circuit === "half-open" && member.inFlight > 0) return false;
  return member.inFlight < maxInFlightPerDevice;
}

/**
 * Picks the device for a prefill among the available `members` (avoiding `avoidTarget` unless it
 * is the only one): "prefix-affinity" the device that completed the longest prefix of the request,
 * else the least loaded; "least-loaded" the one with the fewest prefills, counting the larger of
 * ours in flight and its reported load, rotating among ties; "round-robin" each in turn. Pure:
 * changes neither `members` nor `routing`. Throws RESOURCE_EXHAUSTED DEVICE_BUSY (retry in 50 ms)
 * when no device is available.
 */
export function pickDevice<M extends RoutableDevice>(
  members: readonly M[],
  request: RouteRequest,
  routing: Routing,
): Picked<M> {
  const available = (m: M) => isAvailable(m, routing.maxInFlightPerDevice);
  let candidates = members.filter((m) => available(m) && m.target !== request.avoidTarget);
  if (candidates.length === 0) candidates = members.filter(available);
  if (candidates.length === 0) {
    throw new OpalError(
      Code.RESOURCE_EXHAUSTED,
      `no device available: all ${members.length} are busy or out of service`,
      { reason: Reason.DEVICE_BUSY, retryDelayMs: 50 },
    );
  }
  const { policy, turn } = routing;
  if (policy === "prefix-affinity") {
    for (let i = request.prefixKeys.length - 1; i >= 0; i--) {
      const holder = candidates.find(
        (m) => m.target === routing.affinity.get(request.prefixKeys[i]!),
      );
      if (holder) return { member: holder, turn };
    }
  }
  if (policy === "round-robin")
    return { member: candidates[turn % candidates.length]!, turn: turn + 1 };
  // The device's own report counts every client's work; ours is fresher: take the larger.
  const load = (m: M) => Math.max(m.inFlight, m.reportedLoad ?? 0);
  const least = Math.min(...candidates.map(load));
  const tied = candidates.filter((m) => load(m) === least);
  return { member: tied[turn % tied.length]!, turn: turn + 1 };
}
