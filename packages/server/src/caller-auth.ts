import { timingSafeEqual } from "node:crypto";
import type { Metadata } from "@grpc/grpc-js";
import { Code, OpalError, Reason } from "@opal/core";
import type { CallerCredentials, ServerAuthOptions } from "./server-options";

/** The tenant of unauthenticated servers. */
export const DEFAULT_TENANT = "default";

/** Resolves a call's tenant from its metadata and TLS peer. */
export type Authenticator = (
  metadata: Metadata,
  clientCertificateCommonName: string | undefined,
) => Promise<string>;

/** Builds the authenticator for `auth` (undefined: every caller is {@link DEFAULT_TENANT}). */
export function createAuthenticator(auth: ServerAuthOptions | undefined): Authenticator {
  if (!auth) return async () => DEFAULT_TENANT;
  const check =
    "tokens" in auth
      ? tokenTable(auth.tokens)
      : (credentials: CallerCredentials) => auth.authenticate(credentials);
  return async (metadata, clientCertificateCommonName) => {
    const header = metadata.get("authorization")[0];
    const match = typeof header === "string" ? /^Bearer (.+)$/i.exec(header.trim()) : null;
    const token = match?.[1];
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

function tokenTable(tokens: Readonly<Record<string, string>>) {
  const entries = Object.entries(tokens).map(
    ([token, tenant]) => [Buffer.from(token), tenant] as const,
  );
  return ({ token }: CallerCredentials): string => {
    if (token === undefined) throw unauthenticated(true);
    const given = Buffer.from(token);
    // Compare against every entry in constant time per entry, so timing reveals nothing.
    let found: string | undefined;
    for (const [known, tenant] of entries) {
      if (known.length === given.length && timingSafeEqual(known, given)) found = tenant;
    }
    if (found === undefined) throw unauthenticated(false);
    return found;
  };
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
