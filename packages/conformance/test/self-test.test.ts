import {
  type ConformanceReport,
  formatConsoleReport,
  runConformance,
  toConformanceTests,
  toJsonReport,
  toJunitXml,
} from "@opal/conformance";
import type { FaultConfig, MockServer } from "@opal/mock";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MOCK_KNOWN_FAILING, serveConformanceMock, TOKEN_A, TOKEN_B } from "./mock-device";

let mock: MockServer;
let baseline: ConformanceReport;

beforeAll(async () => {
  mock = await serveConformanceMock();
  baseline = await runConformance({
    target: mock.address,
    token: TOKEN_A,
    tokenB: TOKEN_B,
    knownFailing: MOCK_KNOWN_FAILING,
    prefillTimeoutMs: 10_000,
    testTimeoutMs: 20_000,
  });
}, 60_000);

afterAll(async () => {
  await mock?.close({ graceMs: 0 });
});

/** Runs the tests matching `focus` with `faults` injected into the mock. */
async function runWithFaults(
  faults: FaultConfig,
  focus: RegExp,
  options: { prefillTimeoutMs?: number; testTimeoutMs?: number } = {},
) {
  mock.device.setFaults(faults);
  try {
    return await runConformance({
      target: mock.address,
      token: TOKEN_A,
      tokenB: TOKEN_B,
      focus,
      prefillTimeoutMs: options.prefillTimeoutMs ?? 5_000,
      testTimeoutMs: options.testTimeoutMs ?? 10_000,
    });
  } finally {
    mock.device.setFaults({});
  }
}

function statusOf(report: ConformanceReport, id: string) {
  const result = report.results.find((r) => r.id === id);
  if (!result) throw new Error(`${id} did not run`);
  return result;
}

describe("the mock passes the suite", () => {
  it("passes every Core and declared Optional test, except its listed departures", () => {
    const unexpected = baseline.results.filter((r) => r.status === "failed" && !r.knownFailing);
    expect(unexpected, formatConsoleReport(baseline)).toEqual([]);
    // No skip: the test for devices without uploads does not apply (the mock accepts uploads).
    expect(baseline.results.filter((r) => r.status === "skipped").map((r) => r.id)).toEqual([]);
    expect(statusOf(baseline, "models.uploads-unsupported").message).toMatch(/^not applicable: /);
    expect(baseline.problems).toEqual([]);
    expect(baseline.ok).toBe(true);
    expect(baseline.verdict, baseline.incomplete.join("\n")).toBe("conformant");
    expect(formatConsoleReport(baseline)).toMatch(/^CONFORMANT: every Core test ran and passed/m);
  });

  it("runs every registered test, each tagged and citing requirement ids", () => {
    expect(baseline.results.map((r) => r.id)).toEqual(toConformanceTests().map((t) => t.id));
    for (const r of baseline.results) {
      expect(r.tag).toMatch(/^(Core|Optional\([a-z-]+\))$/);
      expect(r.spec.length).toBeGreaterThan(0);
      for (const id of r.spec) expect(id).toMatch(/^[A-Z]+-\d+$/);
    }
  });

  it("reports the mock's listed departures as known failures", () => {
    for (const id of MOCK_KNOWN_FAILING) {
      expect(statusOf(baseline, id).status, id).toBe("failed");
      expect(statusOf(baseline, id).knownFailing).toBe(true);
    }
    expect(baseline.summary.knownFailing).toBe(MOCK_KNOWN_FAILING.length);
  });

  it("writes JSON with the device's info and capabilities", () => {
    const json = JSON.parse(toJsonReport(baseline));
    expect(json.info.protocolVersion).toBe("1.0.0");
    expect(json.info.deviceId).toMatch(/^mock-/);
    expect(json.capabilities.dtypes).toContain("KV_DTYPE_F32");
    expect(json.capabilities.maxConcurrentPrefills).toBe(2);
    expect(json.capabilities.features.resume).toBe(true);
    expect(json.results).toHaveLength(baseline.results.length);
    expect(json.ok).toBe(true);
  });

  it("writes well-formed JUnit XML with one testcase per test", () => {
    const xml = toJunitXml(baseline);
    expect(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites ')).toBe(true);
    // Minimal well-formedness: tags balance and nest, attributes are quoted, no raw '<' or '&' in text.
    const stack: string[] = [];
    for (const match of xml.matchAll(/<(\/?)([A-Za-z]+)((?:\s+[a-z]+="[^"<]*")*)\s*(\/?)>/g)) {
      const [, close, name, , selfClose] = match;
      if (selfClose) continue;
      if (close) expect(stack.pop()).toBe(name);
      else stack.push(name!);
    }
    expect(stack).toEqual([]);
    const stripped = xml.replace(/<\?xml[^>]*\?>/, "").replace(/<[^>]+>/g, "");
    expect(stripped).not.toMatch(/[<>]|&(?!(amp|lt|gt|quot|apos);)/);
    // One test case per test, and the verdict.
    expect(xml.match(/<testcase /g)).toHaveLength(baseline.results.length + 1);
    expect(xml).toContain('<property name="verdict" value="conformant"/>');
    expect(xml.match(/<failure /g) ?? []).toHaveLength(0);
    expect(xml).toContain('name="stream.canonical-order [Core]"');
  });
});

describe("a conformance test that cannot fail is a defect: each mock fault fails the tests it must", () => {
  it("errors on every Prefill fail the prefill, stream and validation tests", async () => {
    const report = await runWithFaults(
      { errors: { Prefill: { rate: 1 } } },
      /^(identity\.get-info|stream\.canonical-order|stream\.digest|prefill\.kv-matches-reference|prefill\.first-token|prefill\.sdk-client|validation\.prompt-empty)$/,
    );
    expect(statusOf(report, "identity.get-info").status).toBe("passed");
    for (const id of [
      "stream.canonical-order",
      "stream.digest",
      "prefill.kv-matches-reference",
      "prefill.first-token",
      "prefill.sdk-client",
      "validation.prompt-empty",
    ]) {
      expect(statusOf(report, id).status, id).toBe("failed");
    }
    expect(statusOf(report, "stream.canonical-order").message).toMatch(/UNAVAILABLE DEVICE_FAULT/);
    expect(report.ok).toBe(false);
  });

  it("abortAfterChunks fails the stream, correctness, SDK and fetch tests", async () => {
    const report = await runWithFaults(
      { abortAfterChunks: 2 },
      /^(validation\.prompt-empty|stream\.canonical-order|stream\.digest|prefill\.kv-matches-reference|prefill\.sdk-client|retention\.fetch)$/,
    );
    expect(statusOf(report, "validation.prompt-empty").status).toBe("passed");
    for (const id of [
      "stream.canonical-order",
      "stream.digest",
      "prefill.kv-matches-reference",
      "prefill.sdk-client",
      "retention.fetch",
    ]) {
      expect(statusOf(report, id).status, id).toBe("failed");
    }
  });

  it("corruptChunk fails the CRC check (PF-15), the digest and the SDK", async () => {
    const report = await runWithFaults(
      { corruptChunk: 3 },
      /^(identity\.probe|stream\.canonical-order|stream\.digest|prefill\.kv-matches-reference|prefill\.sdk-client)$/,
    );
    expect(statusOf(report, "identity.probe").status).toBe("passed");
    for (const id of [
      "stream.canonical-order",
      "stream.digest",
      "prefill.kv-matches-reference",
      "prefill.sdk-client",
    ]) {
      expect(statusOf(report, id).status, id).toBe("failed");
    }
    expect(statusOf(report, "stream.canonical-order").message).toMatch(/PF-15/);
  });

  it("stallAfterChunks past the deadline fails the stream and concurrency tests", async () => {
    const report = await runWithFaults(
      { stallAfterChunks: 2, stallMs: 10_000 },
      /^(identity\.get-info|stream\.canonical-order|prefill\.kv-matches-reference|concurrency\.max-concurrent)$/,
      { prefillTimeoutMs: 800 },
    );
    expect(statusOf(report, "identity.get-info").status).toBe("passed");
    for (const id of [
      "stream.canonical-order",
      "prefill.kv-matches-reference",
      "concurrency.max-concurrent",
    ]) {
      expect(statusOf(report, id).status, id).toBe("failed");
    }
    expect(statusOf(report, "stream.canonical-order").message).toMatch(/DEADLINE_EXCEEDED/);
  });

  it("dropConnectionAfterChunks fails the stream and SDK tests", async () => {
    const report = await runWithFaults(
      { dropConnectionAfterChunks: 3 },
      /^(identity\.get-info|stream\.canonical-order|prefill\.sdk-client)$/,
    );
    expect(statusOf(report, "identity.get-info").status).toBe("passed");
    for (const id of ["stream.canonical-order", "prefill.sdk-client"]) {
      expect(statusOf(report, id).status, id).toBe("failed");
    }
  });

  it("latency beyond 1 s fails the probe (ID-9) and first-snapshot (TM-1) deadlines", async () => {
    const report = await runWithFaults(
      { latencyMs: 1_200 },
      /^(identity\.capabilities|identity\.probe|telemetry\.snapshots)$/,
    );
    expect(statusOf(report, "identity.capabilities").status).toBe("passed");
    expect(statusOf(report, "identity.probe").message).toMatch(/ID-9/);
    expect(statusOf(report, "telemetry.snapshots").message).toMatch(/TM-1/);
  });
});

describe("the known-failing list cannot go stale", () => {
  // identity.probe fails while every Probe is answered with an injected error.
  const focus = /^identity\.(get-info|probe)$/;
  const withFailingProbe = async <T>(run: () => Promise<T>): Promise<T> => {
    mock.device.setFaults({ errors: { Probe: { rate: 1 } } });
    try {
      return await run();
    } finally {
      mock.device.setFaults({});
    }
  };

  it("a listed test that fails keeps the run OK", async () => {
    const report = await withFailingProbe(() =>
      runConformance({
        target: mock.address,
        token: TOKEN_A,
        focus,
        knownFailing: ["identity.probe"],
      }),
    );
    expect(statusOf(report, "identity.probe")).toMatchObject({
      status: "failed",
      knownFailing: true,
    });
    expect(report.summary.knownFailing).toBe(1);
    expect(report.ok).toBe(true);
  });

  it("a listed test that passes fails the run", async () => {
    const report = await withFailingProbe(() =>
      runConformance({
        target: mock.address,
        token: TOKEN_A,
        focus,
        knownFailing: ["identity.probe", "identity.get-info"],
      }),
    );
    expect(report.summary.unexpectedPasses).toBe(1);
    expect(report.problems.join("\n")).toMatch(
      /identity\.get-info is listed as known-failing but passed/,
    );
    expect(report.ok).toBe(false);
    expect(toJunitXml(report)).toMatch(/listed as known-failing but passed/);
  });

  it("an unknown id in the list fails the run", async () => {
    const report = await runConformance({
      target: mock.address,
      token: TOKEN_A,
      focus,
      knownFailing: ["no.such-test"],
    });
    expect(report.problems.join("\n")).toMatch(/no\.such-test/);
    expect(report.ok).toBe(false);
  });
});
