import { Code, OpalError, Reason } from "@opal/core";
import type { PoolMember } from "./pool-member";

/**
 * The pool's KV handle for the device `target`'s handle `kvHandle`: the target, URI-encoded, a
 * `|`, then the device's handle, so FetchKv and ReleaseKv reach the device that holds the cache.
 */
export function toPoolHandle(target: string, kvHandle: string): string {
  return `${encodeURIComponent(target)}|${kvHandle}`;
}

/**
 * The member holding a pool handle and the device's own handle. Throws NOT_FOUND
 * KV_HANDLE_NOT_FOUND when no member of `members` has that target (or it is no pool handle).
 */
export function resolvePoolHandle(
  members: readonly PoolMember[],
  poolHandle: string,
): { readonly member: PoolMember; readonly handle: string } {
  const split = poolHandle.indexOf("|");
  const target = split > 0 ? decodeURIComponent(poolHandle.slice(0, split)) : "";
  const member = members.find((m) => m.target === target);
  if (!member) {
    throw new OpalError(Code.NOT_FOUND, "no KV handle of that name in this pool", {
      reason: Reason.KV_HANDLE_NOT_FOUND,
    });
  }
  return { member, handle: poolHandle.slice(split + 1) };
}

/** The target of the member of `members` holding `poolHandle`; undefined for any other string. */
export function targetOfPoolHandle(
  members: readonly PoolMember[],
  poolHandle: string,
): string | undefined {
  const split = poolHandle.indexOf("|");
  if (split <= 0) return undefined;
  const encoded = poolHandle.slice(0, split);
  return members.find((m) => encodeURIComponent(m.target) === encoded)?.target;
}
