import { serveMockDevice } from "@opal/mock";
import { formatConsoleReport, runConformance } from "@opal/conformance";
import { test } from "vitest";

test("smoke", async () => {
  const mock = await serveMockDevice(
    { profile: "instant", limits: { maxConcurrentPrefills: 2, maxQueuedPrefills: 2 } },
    { auth: { tokens: { "token-a": "tenant-a", "token-b": "tenant-b" } } },
  );
  try {
    const report = await runConformance({ target: mock.address, token: "token-a", tokenB: "token-b", testTimeoutMs: 20_000, prefillTimeoutMs: 10_000, onResult: (r) => console.log(r.status, r.id, r.durationMs, r.message ?? "") });
    console.log(formatConsoleReport(report));
  } finally {
    await mock.close({ graceMs: 0 });
  }
}, 300_000);
