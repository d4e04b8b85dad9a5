import { runConformance } from "@opal/conformance";
import { type MockServer, serveMockDevice } from "@opal/mock";
import { createTestCertificates, type TestCertificates } from "@opal/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

let certs: TestCertificates;
let mock: MockServer;

beforeAll(async () => {
  certs = await createTestCertificates();
  mock = await serveMockDevice(
    { profile: "instant" },
    {
      tls: {
        certChainPem: certs.serverCertPem,
        privateKeyPem: certs.serverKeyPem,
        clientCaPem: certs.caPem,
        requireClientCert: true,
      },
      auth: { tokens: { "tls-token": "tenant-tls" } },
    },
  );
}, 60_000);

afterAll(async () => {
  await mock?.close({ graceMs: 0 });
  await certs?.cleanup();
});

describe("the suite over mutual TLS", () => {
  it("reaches DeviceService, health and reflection with the client certificate", async () => {
    const report = await runConformance({
      target: mock.address,
      token: "tls-token",
      tls: {
        caPem: certs.caPem,
        certChainPem: certs.clientCertPem,
        privateKeyPem: certs.clientKeyPem,
        serverNameOverride: "localhost",
      },
      focus: /^(identity|health|reflection|auth)\.|^stream\.digest$/,
    });
    expect(
      report.results.filter((r) => r.status !== "passed").map((r) => `${r.id}: ${r.message}`),
    ).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it("reports an unreachable device (no client certificate) as a setup problem", async () => {
    const report = await runConformance({
      target: mock.address,
      tls: { caPem: certs.caPem, serverNameOverride: "localhost" },
      focus: /^identity\.probe$/,
    });
    expect(report.ok).toBe(false);
    expect(report.info).toBeUndefined();
    expect(report.problems.join()).toMatch(/cannot read the device's GetInfo/);
  });
});
