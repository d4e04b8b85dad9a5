import type { CallRegistry } from "@opal/core";
import { admitTrial } from "./circuit-breaker";
import { isAvailable } from "./pick-device";
import { createPoolMember, type MemberWatch, type PoolMember } from "./pool-member";
import type { PoolSettings, PoolState } from "./pool-state";
import { watchMemberHealth } from "./watch-member-health";

/** Longest a retired device is kept open for the leases it granted, in ms. */
const MAX_LEASE_WAIT_MS = 3_600_000;

/**
 * Connects `target` (from the `dns:///` target `source`, undefined for a listed target) and adds
 * it to the pool, watching its health when the pool does. Throws what `pool.connect` throws, with
 * nothing added.
 */
export function addMember(pool: PoolState, target: string, source: string | undefined): void {
  const driver = pool.connect(target);
  const member = createPoolMember(target, driver, source, openMemberWatch(pool.watches));
  pool.members.push(member);
  if (pool.settings.healthMs > 0) watchMemberHealth(member, pool.settings.healthMs);
}

/** A member's watch: one call of the pool's `watches`, which `stop()` ends alone. */
function openMemberWatch(watches: CallRegistry): MemberWatch {
  const stopping = new AbortController();
  const call = watches.open({ signal: stopping.signal });
  return {
    signal: call.signal,
    stop() {
      stopping.abort();
      call.dispose();
    },
  };
}

/**
 * True when `member` takes a new prefill at `nowMs` (see `isAvailable`); an open circuit whose
 * `openMs` has passed goes half-open first.
 */
export function isAvailableAt(member: PoolMember, settings: PoolSettings, nowMs: number): boolean {
  admitTrial(member, settings.openMs, nowMs);
  return isAvailable(member, settings.maxInFlightPerDevice);
}

/** The first member that takes a prefill now, else the first: for calls any device answers. */
export function firstMember(pool: PoolState): PoolMember {
  return pool.members.find((m) => isAvailableAt(m, pool.settings, Date.now())) ?? pool.members[0]!;
}

/** Starts a call (prefill, fetch, release) on `member`; end it with {@link endCall}. */
export function beginCall(member: PoolMember): void {
  member.busy++;
}

/** Ends a call begun with {@link beginCall}; the last one on a member DNS dropped may retire it. */
export function endCall(pool: PoolState, member: PoolMember): void {
  member.busy--;
  if (member.removed) retireRemoved(pool, Date.now());
}

/**
 * Notes a lease `member` granted until `leaseExpiryUnixMs`, held to at most an hour after `nowMs`:
 * a device's clock or a bad value must not keep a retired device open for long.
 */
export function noteLease(member: PoolMember, leaseExpiryUnixMs: number, nowMs: number): void {
  const capped = Math.min(leaseExpiryUnixMs, nowMs + MAX_LEASE_WAIT_MS);
  member.leaseUntilMs = Math.max(member.leaseUntilMs, capped);
}

/**
 * Closes and drops the members DNS no longer lists once nothing runs on them and the leases they
 * granted have ended at `nowMs` (until then their KV handles still reach them).
 */
export function retireRemoved(pool: PoolState, nowMs: number): void {
  const idle = pool.members.filter((m) => m.removed && m.busy === 0 && m.leaseUntilMs <= nowMs);
  for (const member of idle) {
    pool.members.splice(pool.members.indexOf(member), 1);
    member.watch.stop();
    void member.driver.close().catch(() => {});
  }
}
