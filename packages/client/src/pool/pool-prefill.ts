import { OpalError } from "@opal/core";
import type { DriverCallOptions, PrefillEvent, PrefillRequest } from "@opal/driver";
import { checkAcceptedDescriptor } from "../prefill/check-accepted-descriptor";
import { admitTrial } from "./circuit-breaker";
import { pickDevice } from "./pick-device";
import { toPoolHandle } from "./pool-handle";
import type { PoolMember } from "./pool-member";
import { beginCall, endCall, noteLease } from "./pool-membership";
import type { PoolState } from "./pool-state";
import { prefixKeysOf, rememberPrefixes } from "./prefix-affinity";
import { type PrefillEnd, recordPrefillEnd } from "./record-prefill-end";

/**
 * The pool's `prefill`: routes `request` to a member (see `pickDevice`), streams its events with
 * the `accepted` handle made a pool handle, and records how the prefill ended for the breaker,
 * retry avoidance and prefix affinity. Throws RESOURCE_EXHAUSTED DEVICE_BUSY when no member is
 * available, FAILED_PRECONDITION DESCRIPTOR_MISMATCH when `accepted` contradicts the request.
 */
export async function* poolPrefill(
  pool: PoolState,
  request: PrefillRequest,
  call?: DriverCallOptions,
): AsyncGenerator<PrefillEvent> {
  const prefixKeys = pool.settings.routing === "prefix-affinity" ? prefixKeysOf(request) : [];
  const member = routePrefill(pool, request, prefixKeys);
  member.inFlight++;
  beginCall(member);
  member.prefills++;
  let end: PrefillEnd = "abandoned";
  try {
    for await (const event of member.driver.prefill(request, call)) {
      if (event.type === "completed") {
        // Recorded before yielding: a consumer may stop iterating right after `completed`.
        end = "completed";
        rememberPrefixes(pool.affinity, prefixKeys, member.target);
      }
      if (event.type === "accepted") {
        noteLease(member, event.leaseExpiryUnixMs, Date.now());
        // A device whose cache is not the one asked for broke the protocol (PF-12): its failure.
        const refused = checkAcceptedDescriptor(request, event.descriptor);
        if (refused) throw refused;
      }
      yield event.type === "accepted"
        ? { ...event, kvHandle: toPoolHandle(member.target, event.kvHandle) }
        : event;
    }
  } catch (error) {
    end = OpalError.from(error);
    throw end;
  } finally {
    member.inFlight--;
    recordPrefillEnd(pool, { member, requestId: request.requestId, end }, Date.now());
    endCall(pool, member);
  }
}

/** The member for `request`: open circuits past `openMs` go half-open, then `pickDevice` picks. */
function routePrefill(
  pool: PoolState,
  request: PrefillRequest,
  prefixKeys: readonly string[],
): PoolMember {
  const { settings } = pool;
  const nowMs = Date.now();
  for (const member of pool.members) admitTrial(member, settings.openMs, nowMs);
  const { member, turn } = pickDevice(
    pool.members,
    { avoidTarget: pool.failedFor.get(request.requestId), prefixKeys },
    {
      policy: settings.routing,
      maxInFlightPerDevice: settings.maxInFlightPerDevice,
      affinity: pool.affinity,
      turn: pool.turn,
    },
  );
  pool.turn = turn;
  return member;
}
