import { networkInterfaces } from "node:os";
import { credentials as grpcCredentials } from "@grpc/grpc-js";
import { createDeviceClient, type DeviceClient } from "@opal/client";
import { Code } from "@opal/core";
import { createMockDevice } from "@opal/mock";
import {
  collectPrefill,
  createHealthClient,
  createReflectionClient,
  createTestCertificates,
  expectOpalError,
  type TestCertificates,
} from "@opal/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type CallerCredentials,
  createDeviceServer,
  DEVICE_SERVICE_NAME,
  type DeviceServer,
} from "../src/index";
import { tinyRequest } from "./fixtures";
import { rawUnaryCall } from "./raw-http2";

describe("bearer tokens (SEC-4, SEC-5)", () => {
  let server: DeviceServer;
  const clients: DeviceClient[] = [];
  const client = (token?: string) => {
    const c = createDeviceClient(server.address, token === undefined ? {} : { token });
    clients.push(c);
    return c;
  };
  beforeAll(async () => {
    server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }), {
      auth: { tokens: { "t-a": "tenant-a" } },
    });
  });
  afterAll(async () => {
    for (const c of clients) await c.close();
    await server.shutdown({ graceMs: 0 });
  });

  it("fails a call without a token with UNAUTHENTICATED TOKEN_INVALID", async () => {
    const error = await expectOpalError(client().getInfo(), Code.UNAUTHENTICATED, "TOKEN_INVALID");
    expect(error.message).toContain("missing bearer token");
  });

  it("fails a prefill with a wrong token before looking at the request (PF-1 stage 1)", async () => {
    const error = await expectOpalError(
      collectPrefill(client("t-b").prefill(tinyRequest({ modelId: "no-such-model" }))),
      Code.UNAUTHENTICATED,
      "TOKEN_INVALID",
    );
    expect(error.message).not.toContain("t-b");
    await expectOpalError(client("t-aa").getInfo(), Code.UNAUTHENTICATED, "TOKEN_INVALID");
  });

  it("serves a caller with a known token", async () => {
    const ok = client("t-a");
    expect((await ok.getInfo()).protocolVersion).toMatch(/^1\./);
    const prefill = await collectPrefill(ok.prefill(tinyRequest()));
    expect(prefill.stats.promptTokens).toBe(32);
  });

  it("serves health and reflection without a token (GEN-10)", async () => {
    const health = createHealthClient(server.address);
    const reflection = createReflectionClient(server.address);
    try {
      expect(await health.check(DEVICE_SERVICE_NAME)).toBe("SERVING");
      expect(await reflection.listServices()).toContain(DEVICE_SERVICE_NAME);
    } finally {
      health.close();
      reflection.close();
    }
  });

  it("passes the token to an authenticate function and fails a throwing one as TOKEN_INVALID", async () => {
    const seen: CallerCredentials[] = [];
    const custom = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }), {
      auth: {
        authenticate(credentials) {
          seen.push(credentials);
          if (credentials.token !== "secret") throw new Error("unknown token secret-ish");
          return "tenant-x";
        },
      },
    });
    const good = createDeviceClient(custom.address, { token: "secret" });
    const bad = createDeviceClient(custom.address, { token: "nope" });
    try {
      // GetInfo: the one call a client makes without reading GetInfo first (VER-2).
      await good.getInfo();
      const error = await expectOpalError(bad.getInfo(), Code.UNAUTHENTICATED, "TOKEN_INVALID");
      expect(error.message).not.toContain("secret-ish");
      expect(seen).toEqual([
        { token: "secret", clientCertificateCommonName: undefined },
        { token: "nope", clientCertificateCommonName: undefined },
      ]);
    } finally {
      await good.close();
      await bad.close();
      await custom.shutdown({ graceMs: 0 });
    }
  });
});

/** A non-loopback IPv4 address of this machine, to be a "network" peer of itself. */
const networkAddress = Object.values(networkInterfaces())
  .flat()
  .find((i) => i && i.family === "IPv4" && !i.internal)?.address;

describe.skipIf(networkAddress === undefined)("bearer tokens over plaintext (SEC-2)", () => {
  it("refuses a token over plaintext from a non-loopback peer unless the operator allows it", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    const strict = await createDeviceServer(device, {
      host: networkAddress!,
      auth: { tokens: { "t-a": "tenant-a" } },
    });
    const lenient = await createDeviceServer(device, {
      host: networkAddress!,
      auth: { tokens: { "t-a": "tenant-a" }, allowPlaintextTokens: true },
    });
    const toStrict = createDeviceClient(strict.address, { token: "t-a" });
    const toLenient = createDeviceClient(lenient.address, { token: "t-a" });
    try {
      const error = await expectOpalError(
        toStrict.getInfo(),
        Code.UNAUTHENTICATED,
        "TOKEN_INVALID",
      );
      expect(error.message).toContain("plaintext");
      expect((await toLenient.getInfo()).protocolVersion).toMatch(/^1\./);
    } finally {
      await toStrict.close();
      await toLenient.close();
      await strict.shutdown({ graceMs: 0 });
      await lenient.shutdown({ graceMs: 0 });
    }
  });
});

describe("TLS and mutual TLS (SEC-1)", () => {
  let certs: TestCertificates;
  beforeAll(async () => {
    certs = await createTestCertificates({ clientCommonName: "decoder-a" });
  });
  afterAll(async () => {
    await certs?.cleanup();
  });

  it("serves a full prefill over TLS and refuses a plaintext client with UNAVAILABLE", async () => {
    const server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }), {
      tls: { certChainPem: certs.serverCertPem, privateKeyPem: certs.serverKeyPem },
    });
    const secure = createDeviceClient(server.address, { tls: { caPem: certs.caPem } });
    const plain = createDeviceClient(server.address);
    try {
      const prefill = await collectPrefill(secure.prefill(tinyRequest()));
      expect(prefill.layers.length).toBe(prefill.descriptor.numLayers);
      await expectOpalError(plain.getInfo({ timeoutMs: 5_000 }), Code.UNAVAILABLE);
      // Health over TLS works too (same port, same credentials).
      const health = createHealthClient(server.address, {
        credentials: grpcCredentials.createSsl(Buffer.from(certs.caPem)),
      });
      expect(await health.check("")).toBe("SERVING");
      health.close();
    } finally {
      await secure.close();
      await plain.close();
      await server.shutdown({ graceMs: 0 });
    }
  });

  it.skipIf(networkAddress === undefined)(
    "accepts a token from a non-loopback peer over TLS (SEC-2)",
    async () => {
      const server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }), {
        host: networkAddress!,
        tls: { certChainPem: certs.serverCertPem, privateKeyPem: certs.serverKeyPem },
        auth: { tokens: { "t-a": "tenant-a" } },
      });
      const client = createDeviceClient(server.address, {
        token: "t-a",
        tls: { caPem: certs.caPem, serverNameOverride: "localhost" },
      });
      try {
        expect((await client.getInfo()).protocolVersion).toMatch(/^1\./);
      } finally {
        await client.close();
        await server.shutdown({ graceMs: 0 });
      }
    },
  );

  it("with requireClientCert refuses a client without a certificate, serves one with it, and passes its CN to authenticate", async () => {
    const seen: CallerCredentials[] = [];
    const device = createMockDevice({ models: ["opal-tiny"] });
    const server = await createDeviceServer(device, {
      tls: {
        certChainPem: certs.serverCertPem,
        privateKeyPem: certs.serverKeyPem,
        clientCaPem: certs.caPem,
        requireClientCert: true,
      },
      auth: {
        // The certificate names the workload; a token picks the tenant (default tenant-a).
        authenticate(credentials) {
          seen.push(credentials);
          if (credentials.clientCertificateCommonName !== "decoder-a") throw new Error("no cert");
          return credentials.token === "t-b" ? "tenant-b" : "tenant-a";
        },
      },
    });
    const clientTls = {
      caPem: certs.caPem,
      certChainPem: certs.clientCertPem,
      privateKeyPem: certs.clientKeyPem,
    };
    const withoutCert = createDeviceClient(server.address, { tls: { caPem: certs.caPem } });
    const tenantA = createDeviceClient(server.address, { tls: clientTls });
    const tenantB = createDeviceClient(server.address, { tls: clientTls, token: "t-b" });
    try {
      await expectOpalError(withoutCert.getInfo({ timeoutMs: 5_000 }), Code.UNAVAILABLE);
      expect(seen).toEqual([]);

      const prefill = await collectPrefill(tenantA.prefill(tinyRequest({ retentionSeconds: 60 })));
      expect(seen[0]).toEqual({ token: undefined, clientCertificateCommonName: "decoder-a" });
      expect(prefill.kvHandle).not.toBe("");

      // The tenant authenticate returned scopes the KV: A fetches its handle, B cannot see it.
      const fetched = await collectPrefill(tenantA.fetchKv({ kvHandle: prefill.kvHandle }));
      expect(fetched.layers.length).toBe(prefill.layers.length);
      await expectOpalError(
        collectPrefill(tenantB.fetchKv({ kvHandle: prefill.kvHandle })),
        Code.NOT_FOUND,
        "KV_HANDLE_NOT_FOUND",
      );
      expect(await tenantB.releaseKv(prefill.kvHandle)).toEqual({ released: false });
      expect(seen.at(-1)).toEqual({ token: "t-b", clientCertificateCommonName: "decoder-a" });
      expect(await tenantA.releaseKv(prefill.kvHandle)).toEqual({ released: true });
    } finally {
      await withoutCert.close();
      await tenantA.close();
      await tenantB.close();
      await server.shutdown({ graceMs: 0 });
    }
  });
});

describe("ambiguous credentials (issue #18 item 9)", () => {
  it("refuses a call carrying two authorization headers instead of serving the first", async () => {
    const seen: Array<string | undefined> = [];
    const server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }), {
      auth: {
        authenticate: ({ token }) => {
          seen.push(token);
          if (token === "t-a" || token === "t-b") return token;
          throw new Error("unknown token");
        },
      },
    });
    const getInfo = (...tokens: string[]) =>
      rawUnaryCall(
        server.address,
        `/${DEVICE_SERVICE_NAME}/GetInfo`,
        tokens.map((token) => ["authorization", `Bearer ${token}`] as const),
      );
    try {
      expect(await getInfo("t-a")).toEqual({ served: true });
      expect(seen).toEqual(["t-a"]);
      // Node's HTTP/2 layer keeps only the first of repeated single-value headers: before the
      // fix this call was served as t-a, whatever the second header said.
      expect(await getInfo("t-a", "t-b")).toEqual({ served: false });
      expect(await getInfo("t-a", "t-a")).toEqual({ served: false });
      expect(seen).toEqual(["t-a"]);
    } finally {
      await server.shutdown({ graceMs: 0 });
    }
  });
});
