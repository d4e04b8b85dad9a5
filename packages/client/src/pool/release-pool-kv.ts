import { Code, OpalError } from "@opal/core";
import type { DriverCallOptions, PrefillDriver } from "@opal/driver";
import { resolvePoolHandle } from "./pool-handle";
import { beginCall, endCall } from "./pool-membership";
import type { PoolState } from "./pool-state";

/**
 * The pool's `releaseKv`: releases the cache on the member the pool handle names; a handle of no
 * member, or one the device does not hold, is `{ released: false }`.
 */
export async function releasePoolKv(
  pool: PoolState,
  kvHandle: string,
  call?: DriverCallOptions,
): ReturnType<PrefillDriver["releaseKv"]> {
  try {
    const { member, handle } = resolvePoolHandle(pool.members, kvHandle);
    beginCall(member);
    try {
      return await member.driver.releaseKv(handle, call);
    } finally {
      endCall(pool, member);
    }
  } catch (error) {
    if (error instanceof OpalError && error.code === Code.NOT_FOUND) return { released: false };
    throw error;
  }
}
