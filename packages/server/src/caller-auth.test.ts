import * as crypto from "node:crypto";
import { Metadata } from "@grpc/grpc-js";
import { Code, type OpalError } from "@opal/core";
import { describe, expect, it, vi } from "vitest";
import { createAuthenticator } from "./caller-auth";

vi.mock("node:crypto", async (importOriginal) => {
  const original = await importOriginal<typeof import("node:crypto")>();
  return { ...original, timingSafeEqual: vi.fn(original.timingSafeEqual) };
});

const LOOPBACK = { clientCertificateCommonName: undefined, address: "127.0.0.1:1234" };

function bearer(token: string): Metadata {
  const metadata = new Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  return metadata;
}

describe("createAuthenticator with a token table", () => {
  it("compares any token with every known one, in constant time over equal lengths (SEC-15)", async () => {
    const authenticate = createAuthenticator(
      { tokens: { "secret-a": "tenant-a", "a-much-longer-secret-b": "tenant-b" } },
      { tls: false },
    );
    const compare = vi.mocked(crypto.timingSafeEqual);
    for (const token of ["x", "secret-", "secret-a", "secret-ab", "y".repeat(500)]) {
      compare.mockClear();
      const tenant = await authenticate(bearer(token), LOOPBACK).catch((e: OpalError) => e);
      // Two comparisons whatever the given token's length or prefix, each of equal lengths.
      expect(compare).toHaveBeenCalledTimes(2);
      for (const [a, b] of compare.mock.calls) {
        expect((a as Buffer).byteLength).toBe((b as Buffer).byteLength);
      }
      if (token === "secret-a") expect(tenant).toBe("tenant-a");
      else expect(tenant).toMatchObject({ code: Code.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
    }
    expect(await authenticate(bearer("a-much-longer-secret-b"), LOOPBACK)).toBe("tenant-b");
  });
});
