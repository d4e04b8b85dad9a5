import { createHash, timingSafeEqual } from "node:crypto";
import { Code, OpalError, Reason } from "@opal/core";
import { type CallMetadata, isLoopbackHost } from "@opal/protocol";
import type { CallerCredentials, ServerAuthOptions } from "./server-options";

/** The tenant of unauthenticated servers. */
export const DEFAULT_TENANT = "default";

/** The transport-level identity of a caller. */
export interface CallerPeer {
  /** Subject CN of the verified client certificate, if any. */
  readonly clientCertificateCommonName: string | undefined;
  /** The peer address as grpc-js reports it (`host:port`, or "unknown"). */
  readonly address: string;
}

/** Resolves a call's tenant from its metadata and transport peer. */
export type Authenticator = (metadata: CallMetadata, peer: CallerPeer) => Promise<string>;

/**
 * Builds the authenticator for `auth` (undefined: every caller is {@link DEFAULT_TENANT}). `tls`
 * says whether the server's connections are encrypted (SEC-2 refuses plaintext tokens otherwise).
 */
export function createAuthenticator(
  auth: ServerAuthOptions | undefined,
  { tls }: { readonly tls: boolean },
): Authenticator {
  if (!auth) return async () => DEFAULT_TENANT;
  const check =
    "tokens" in auth
      ? tokenTable(auth.tokens)
      : (credentials: CallerCredentials) => auth.authenticate(credentials);
  return async (metadata, { clientCertificateCommonName, address }) => {
    const headers = metadata.get("authorization");
    // Two headers are ambiguous (a proxy may check one, the device another): refuse, not pick one.
    if (headers.length > 1) {
      throw new OpalError(
        Code.UNAUTHENTICATED,
        `expected one authorization header, got ${headers.length}`,
        { reason: Reason.TOKEN_INVALID },
      );
    }
    const header = headers[0];
    const match = typeof header === "string" ? /^Bearer (.+)$/i.exec(header.trim()) : null;
    const token = match?.[1];
    if (token !== undefined && !tls && !auth.allowPlaintextTokens && !isLoopbackPeer(address)) {
      throw new OpalError(
        Code.UNAUTHENTICATED,
        "bearer tokens are refused over plaintext connections from non-loopback peers: use TLS",
        { reason: Reason.TOKEN_INVALID },
      );
    }
    let tenant: string;
    try {
      tenant = await check({ token, clientCertificateCommonName });
    } catch (error) {
      if (error instanceof OpalError) throw error;
      throw unauthenticated(token === undefined);
    }
    if (!tenant) throw unauthenticated(token === undefined);
    return tenant;
  };
}

/** True for `127.0.0.0/8`, `::1` and IPv4-mapped loopback peers (`host:port` as grpc-js reports them). */
export function isLoopbackPeer(address: string): boolean {
  return isLoopbackHost(address.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1"));
}

/**
 * A static token table (SEC-15): the given token is compared with every known token, always, as
 * SHA-256 digests of equal length in constant time, so timing reveals neither a matching prefix
 * nor the length of a known token.
 */
function tokenTable(tokens: Readonly<Record<string, string>>) {
  const entries = Object.entries(tokens).map(([token, tenant]) => [sha256(token), tenant] as const);
  return ({ token }: CallerCredentials): string => {
    if (token === undefined) throw unauthenticated(true);
    const given = sha256(token);
    let found: string | undefined;
    for (const [known, tenant] of entries) {
      if (timingSafeEqual(known, given)) found = tenant;
    }
    if (found === undefined) throw unauthenticated(false);
    return found;
  };
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

function unauthenticated(missing: boolean): OpalError {
  return new OpalError(
    Code.UNAUTHENTICATED,
    missing
      ? "missing bearer token (metadata `authorization: Bearer <token>`)"
      : "invalid bearer token",
    { reason: Reason.TOKEN_INVALID },
  );
}
