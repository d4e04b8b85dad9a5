import { isIP } from "node:net";
import { Code, OpalError, Reason } from "@opal/core";
import { isLoopbackHost } from "@opal/protocol";

/**
 * PS-1: whether the device may push to `target` for a caller at `peer` (`host:port` as grpc-js
 * reports it). With an operator allow-list, exactly its entries. Without one, only the caller's
 * own address: a target whose host is the caller's IP address, or, for a caller on loopback, a
 * loopback target (`localhost`, `127.0.0.0/8`, `::1`); never a `unix:` path, another host or a
 * name to resolve. Anything else fails PERMISSION_DENIED `PERMISSION_DENIED` with one message for
 * every refused target, so the refusal tells nothing about the target. An empty address is left
 * to the request's validation (INVALID_FIELD).
 */
export function assertPushTargetAllowed(
  target: string,
  allowList: ReadonlySet<string> | undefined,
  peer: string,
): void {
  // An empty address is the request's own error (INVALID_FIELD, PF-1 stage 4).
  if (!target) return;
  const allowed = allowList ? allowList.has(target) : isCallersOwnAddress(target, peer);
  if (!allowed) {
    throw new OpalError(
      Code.PERMISSION_DENIED,
      allowList
        ? "push_target.address is not among the push targets this device allows"
        : "push_target.address is not among the push targets this device allows (without an operator allow-list: the caller's own address)",
      { reason: Reason.PERMISSION_DENIED },
    );
  }
}

function isCallersOwnAddress(target: string, peer: string): boolean {
  const targetHost = hostOf(target);
  const peerHost = hostOf(peer);
  if (targetHost === undefined || peerHost === undefined || isIP(peerHost) === 0) return false;
  if (isLoopbackHost(peerHost)) return isLoopbackHost(targetHost);
  return isIP(targetHost) !== 0 && unmapped(targetHost) === unmapped(peerHost);
}

/** The host of `host:port` or `[v6]:port` (grpc-js also reports `v6:port` unbracketed). */
function hostOf(address: string): string | undefined {
  const match = /^(?:\[([^\]]+)\]|(.+)):(\d{1,5})$/.exec(address);
  return match ? (match[1] ?? match[2]!).toLowerCase() : undefined;
}

/** `::ffff:a.b.c.d` as `a.b.c.d`, so a dual-stack peer matches its IPv4 form. */
function unmapped(ip: string): string {
  return ip.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, "$1");
}
