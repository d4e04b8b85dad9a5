import { lookup } from "node:dns/promises";
import { Code, OpalError } from "@opal/core";

const DNS_TARGET = /^dns:\/\/\/([^:/]+):(\d+)$/;

/** True for a `dns:///name:port` target. */
export function isDnsTarget(target: string): boolean {
  return DNS_TARGET.test(target);
}

/**
 * The device addresses of a pool target: a `host:port` target is itself; a `dns:///name:port`
 * target is one `address:port` per address the name resolves to (IPv6 in brackets). Rejects
 * UNAVAILABLE when the name does not resolve.
 */
export async function expandTarget(target: string): Promise<string[]> {
  const dns = DNS_TARGET.exec(target);
  if (!dns) return [target];
  const addresses = await lookup(dns[1]!, { all: true }).catch((error: Error) => {
    throw new OpalError(Code.UNAVAILABLE, `cannot resolve ${dns[1]}: ${error.message}`, {
      cause: error,
    });
  });
  return addresses.map((a) =>
    a.family === 6 ? `[${a.address}]:${dns[2]}` : `${a.address}:${dns[2]}`,
  );
}
