import { isOpenPast, recordFailedProbe } from "./circuit-breaker";
import { markBackInService, type PoolMember } from "./pool-member";
import type { PoolState } from "./pool-state";

/**
 * Every `healthMs` until `signal` aborts, probes each member whose circuit has been open for
 * `openMs`: one that answers ready is back in service; otherwise it stays open another `openMs`.
 */
export function startProbingOpenMembers(pool: PoolState, signal: AbortSignal): void {
  const { healthMs, openMs } = pool.settings;
  const prober = setInterval(() => {
    for (const member of pool.members) {
      if (isOpenPast(member, openMs, Date.now())) void probeOpenMember(member, healthMs);
    }
  }, healthMs).unref();
  signal.addEventListener("abort", () => clearInterval(prober), { once: true });
}

/** Probes `member` (within `timeoutMs`); the answer counts only if its circuit is still open. */
async function probeOpenMember(member: PoolMember, timeoutMs: number): Promise<void> {
  const ready = await member.driver
    .probe({ signal: member.watch.signal, timeoutMs })
    .then((state) => state === "ready")
    .catch(() => false);
  if (member.circuit !== "open") return;
  if (ready) markBackInService(member);
  else recordFailedProbe(member, Date.now());
}
