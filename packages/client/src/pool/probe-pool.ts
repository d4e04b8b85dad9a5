import { Code, OpalError, Reason } from "@opal/core";
import type { DriverCallOptions, ProbeState } from "@opal/driver";
import { markBackInService } from "./pool-member";
import { isAvailableAt } from "./pool-membership";
import type { PoolState } from "./pool-state";

/**
 * The pool's `probe`: probes every member; a member that answers ready loses its critical
 * conditions and, if taken out and available again, is back in service. Resolves "ready" when any
 * member is; otherwise rejects UNAVAILABLE DEVICE_FAULT.
 */
export async function probePool(pool: PoolState, call?: DriverCallOptions): Promise<ProbeState> {
  // The members as they are now: DNS may retire one while the probes run.
  const probed = [...pool.members];
  const states = await Promise.allSettled(probed.map((m) => m.driver.probe(call)));
  for (const [i, state] of states.entries()) {
    const member = probed[i]!;
    if (state.status !== "fulfilled" || state.value !== "ready") continue;
    member.critical = []; // before `isAvailableAt`, which skips devices with one
    if (member.circuit !== "closed" && isAvailableAt(member, pool.settings, Date.now()))
      markBackInService(member);
  }
  if (states.some((s) => s.status === "fulfilled" && s.value === "ready")) return "ready";
  throw new OpalError(Code.UNAVAILABLE, "no device of the pool is ready", {
    reason: Reason.DEVICE_FAULT,
  });
}
