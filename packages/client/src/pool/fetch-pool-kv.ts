import type { DriverCallOptions, FetchEvent, PrefillDriver } from "@opal/driver";
import { resolvePoolHandle } from "./pool-handle";
import { beginCall, endCall, noteLease } from "./pool-membership";
import type { PoolState } from "./pool-state";

/**
 * The pool's `fetchKv`: streams the cache from the member the pool handle names, noting the lease
 * it renews. Throws NOT_FOUND KV_HANDLE_NOT_FOUND for a handle of no member.
 */
export async function* fetchPoolKv(
  pool: PoolState,
  request: Parameters<PrefillDriver["fetchKv"]>[0],
  call?: DriverCallOptions,
): AsyncGenerator<FetchEvent> {
  const { member, handle } = resolvePoolHandle(pool.members, request.kvHandle);
  beginCall(member);
  try {
    for await (const event of member.driver.fetchKv({ ...request, kvHandle: handle }, call)) {
      if (event.type === "accepted") noteLease(member, event.leaseExpiryUnixMs, Date.now());
      yield event;
    }
  } finally {
    endCall(pool, member);
  }
}
