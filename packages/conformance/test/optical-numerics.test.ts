import { type ConformanceReport, formatResultLine, runConformance } from "@opal/conformance";
import { type MockProfile, type MockServer, opticalMockProfile, serveMockDevice } from "@opal/mock";
import { afterEach, describe, expect, it } from "vitest";

// The mock's optical profile (docs/guides/mock.md) against the suite's numerics checks: K and V
// carry analog noise of the declared size and the suite judges them against the declared bound
// (PF-37, PF-38); a device whose noise exceeds its declaration fails.

const NUMERICS_TESTS = /^(prefill\.|prefix\.consistent$|idempotence\.replay-recompute$)/;

let mock: MockServer | undefined;
afterEach(async () => {
  await mock?.close({ graceMs: 0 });
  mock = undefined;
});

async function runAgainst(profile: MockProfile): Promise<ConformanceReport> {
  mock = await serveMockDevice({ profile }, { shutdownGraceMs: 0 });
  return runConformance({ target: mock.address, focus: NUMERICS_TESTS });
}

function maxError(report: ConformanceReport): number {
  const notes = report.results.find((r) => r.id === "prefill.kv-matches-reference")?.notes ?? [];
  const match = /max \|error\| ([\d.e+-]+)/.exec(notes.join(" "));
  return match ? Number(match[1]) : Number.NaN;
}

describe("the optical mock profile under the conformance suite", () => {
  it("passes the numerics tests with noise of about the declared bound, never beyond it", async () => {
    const profile = opticalMockProfile({ maxRelError: 0.02, seed: 7 });
    const report = await runAgainst(profile);
    const ran = report.results.filter((r) => r.status !== "skipped");
    expect(ran.filter((r) => r.status !== "passed").map(formatResultLine)).toEqual([]);
    expect(ran.map((r) => r.id)).toContain("prefill.kv-matches-reference");
    expect(report.capabilities).toMatchObject({
      numerics: { deviceKind: "DEVICE_KIND_OPTICAL", bitExact: false, maxRelError: 0.02 },
    });
    // Not exact and not timid: the largest error exceeds half the bound's absolute part (the
    // suite itself checked that none exceeds 0.02 + 0.02·|r|).
    expect(maxError(report)).toBeGreaterThan(0.01);
  }, 60_000);

  it("fails prefill.kv-matches-reference (PF-38) when the noise exceeds the declared bound", async () => {
    const honest = opticalMockProfile({ maxRelError: 0.02 });
    // A mutant: the same declaration, readout noise 20 times larger and no clipping to the bound.
    const mutant: MockProfile = {
      ...honest,
      noise: { ...honest.noise!, readoutSigma: 0.05, clipToBound: false },
    };
    const report = await runAgainst(mutant);
    const kv = report.results.find((r) => r.id === "prefill.kv-matches-reference");
    expect(kv?.status).toBe("failed");
    expect(kv?.message).toMatch(
      /PF-38: layer \d+ [kv] element \d+ = .* exceeds the declared bound/,
    );
    expect(report.ok).toBe(false);
  }, 60_000);
});
