import { expandTarget, isDnsTarget } from "./expand-target";
import { addMember, retireRemoved } from "./pool-membership";
import type { PoolState } from "./pool-state";

/**
 * Resolves the `dns:///` entries of `targets` again: new addresses join the pool, members whose
 * address is gone are marked removed (and retired once idle), members that are back are kept.
 * A failed or empty answer changes nothing, nor does any answer once `closed` has aborted.
 * Rejects with what `pool.connect` throws, leaving the members added so far.
 */
async function refreshDns(
  pool: PoolState,
  targets: readonly string[],
  closed: AbortSignal,
): Promise<void> {
  for (const source of new Set(targets.filter(isDnsTarget))) {
    const addresses = await expandTarget(source).catch(() => undefined);
    // A failed or empty answer is more likely a DNS hiccup than every device gone: keep them.
    if (!addresses?.length || closed.aborted) continue;
    for (const address of addresses) {
      const known = pool.members.find((m) => m.source === source && m.target === address);
      if (known) known.removed = false;
      else addMember(pool, address, source);
    }
    for (const member of pool.members) {
      if (member.source === source && !addresses.includes(member.target)) member.removed = true;
    }
  }
  retireRemoved(pool, Date.now());
}

/**
 * Runs {@link refreshDns} every `pool.settings.dnsRefreshMs` until `signal` aborts, one refresh at
 * a time; does nothing when the interval is 0 or no target is a `dns:///` one.
 */
export function startDnsRefresh(
  pool: PoolState,
  targets: readonly string[],
  signal: AbortSignal,
): void {
  const { dnsRefreshMs } = pool.settings;
  if (dnsRefreshMs <= 0 || !targets.some(isDnsTarget)) return;
  let refreshing = false;
  const refresher = setInterval(() => {
    // One refresh at a time: a slow lookup must not pile up others, or land after a newer one.
    if (refreshing) return;
    refreshing = true;
    refreshDns(pool, targets, signal)
      // A `connect` that throws ends this refresh, keeping the members added so far; the next
      // refresh tries the rest again.
      .catch(() => {})
      .finally(() => {
        refreshing = false;
      });
  }, dnsRefreshMs).unref();
  signal.addEventListener("abort", () => clearInterval(refresher), { once: true });
}
