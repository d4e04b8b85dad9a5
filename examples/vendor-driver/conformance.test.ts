import { formatConsoleReport, runConformance } from "@opal/conformance";
import { createDeviceServer } from "@opal/server";
import { expect, it } from "vitest";
import { createMinimalDriver } from "./minimal-driver";

// The vendor guide's promise: this driver, served by the server host, is a conformant device.
it("passes every Core test of the conformance suite, served by the server host", async () => {
  const server = await createDeviceServer(createMinimalDriver(), { shutdownGraceMs: 0 });
  try {
    const report = await runConformance({
      target: server.address,
      // The driver serves the seeded opal-tiny weights: the conformance weights.
      modelId: "opal-tiny",
      conformanceWeights: true,
      prefillTimeoutMs: 15_000,
      testTimeoutMs: 30_000,
    });
    const core = report.results.filter((r) => r.tag === "Core");
    expect(
      core.filter((r) => r.status !== "passed").map((r) => `${r.id}: ${r.message}`),
      formatConsoleReport(report),
    ).toEqual([]);
    expect(report.verdict, formatConsoleReport(report)).toBe("conformant");
    expect(report.ok).toBe(true);
  } finally {
    await server.shutdown({ graceMs: 0 });
  }
}, 120_000);
