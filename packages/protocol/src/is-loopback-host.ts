import { isIPv4, isIPv6 } from "node:net";

/**
 * True when `host` (a name or address, without port or brackets) is this machine: `localhost`,
 * `127.0.0.0/8`, `::1`, or an IPv4-mapped loopback address.
 */
export function isLoopbackHost(host: string): boolean {
  if (host === "localhost") return true;
  if (isIPv4(host)) return host.startsWith("127.");
  if (isIPv6(host)) return host === "::1" || /^::ffff:127\./i.test(host);
  return false;
}
