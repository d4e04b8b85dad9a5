import type { OpalError } from "@opal/core";
import { isDescriptorViolation } from "../prefill/check-accepted-descriptor";
import { closeCircuit, isDeviceFailureCode, recordFailure } from "./circuit-breaker";
import type { PoolMember } from "./pool-member";
import type { PoolState } from "./pool-state";

/** Most failed request ids a pool remembers; past it the oldest is forgotten. */
const MAX_FAILED_REQUESTS = 10_000;

/** How a prefill on a member ended (see {@link recordPrefillEnd}). */
export type PrefillEnd = OpalError | "completed" | "abandoned";

/** One prefill that ended: on which member, for which request, and how. */
export interface EndedPrefill {
  readonly member: PoolMember;
  readonly requestId: string;
  readonly end: PrefillEnd;
}

/**
 * Counts how a prefill of `requestId` on `member` ended at `nowMs`: "completed", failed with an
 * error, or "abandoned" by its reader before `completed` (it found a chunk corrupt, its sink
 * failed, its caller gave up): not a success, and not necessarily the device's fault, so only a
 * retry avoids the device. A device failure (UNAVAILABLE, INTERNAL, DATA_LOSS, UNKNOWN, or an
 * `accepted` descriptor that contradicts the request) counts towards `failureThreshold`.
 */
export function recordPrefillEnd(pool: PoolState, ended: EndedPrefill, nowMs: number): void {
  const { member, requestId, end } = ended;
  if (end === "completed") {
    closeCircuit(member);
    pool.failedFor.delete(requestId);
    return;
  }
  if (end === "abandoned") {
    avoidOnRetry(pool.failedFor, requestId, member.target);
    return;
  }
  if (!isDeviceFailureCode(end) && !isDescriptorViolation(end)) return;
  avoidOnRetry(pool.failedFor, requestId, member.target);
  recordFailure(member, pool.settings, nowMs);
}

/** A retry of `requestId` avoids `target` (bounded: the oldest requests are forgotten). */
function avoidOnRetry(failedFor: Map<string, string>, requestId: string, target: string): void {
  failedFor.set(requestId, target);
  if (failedFor.size > MAX_FAILED_REQUESTS)
    failedFor.delete(failedFor.keys().next().value as string);
}
