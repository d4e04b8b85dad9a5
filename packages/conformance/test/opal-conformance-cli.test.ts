import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type MockServer, serveMockDevice } from "@opal/mock";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MOCK_KNOWN_FAILING_FILE, serveConformanceMock, TOKEN_A, TOKEN_B } from "./mock-device";

const executable = fileURLToPath(new URL("../dist/opal-conformance.js", import.meta.url));
const built = existsSync(executable);
if (!built && process.env.CI)
  throw new Error(`${executable} is not built (npm test builds it before the tests)`);

/** Runs the executable without blocking this process (the mock answers from it). */
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [executable, ...args],
      { timeout: 60_000 },
      (error, stdout, stderr) => {
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

let mock: MockServer;
let dir: string;
beforeAll(async () => {
  mock = await serveConformanceMock();
  dir = mkdtempSync(join(tmpdir(), "opal-conformance-cli-"));
});
afterAll(async () => {
  await mock?.close({ graceMs: 0 });
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!built)("opal-conformance (the built executable)", () => {
  it("passes against the mock with its known-failing list and writes JUnit and JSON", async () => {
    const junit = join(dir, "report.xml");
    const json = join(dir, "report.json");
    const run = await cli([
      "--target",
      mock.address,
      "--token",
      TOKEN_A,
      "--token-b",
      TOKEN_B,
      "--focus",
      "^(identity|health|reflection|auth|validation|stream|idempotence)\\.",
      "--known-failing",
      MOCK_KNOWN_FAILING_FILE,
      "--junit",
      junit,
      "--json",
      json,
    ]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/pass {2}identity\.get-info \[Core\]/);
    expect(run.stdout).toMatch(/pass {2}idempotence\.supersede-running \[Core\]/);
    // A focused run passes what it ran (exit 0) but cannot certify the device.
    expect(run.stdout).toMatch(/^INCOMPLETE: /m);
    expect(run.stdout).toMatch(/Core tests were not selected/);
    expect(readFileSync(junit, "utf8")).toMatch(/<testsuites name="opal-conformance"/);
    const report = JSON.parse(readFileSync(json, "utf8"));
    expect(report.ok).toBe(true);
    expect(report.verdict).toBe("incomplete");
    expect(report.info.protocolVersion).toBe("1.0.0");
    expect(report.capabilities.layouts).toEqual(["KV_LAYOUT_NHD", "KV_LAYOUT_HND"]);
  }, 60_000);

  it("exits 1 when a test fails and 78 (64 + UNAVAILABLE) when the device cannot be reached", async () => {
    mock.device.setFaults({ errors: { Probe: { rate: 1 } } });
    let failing: Awaited<ReturnType<typeof cli>>;
    try {
      failing = await cli([
        "--target",
        mock.address,
        "--token",
        TOKEN_A,
        "--focus",
        "^identity\\.probe$",
        "--quiet",
      ]);
    } finally {
      mock.device.setFaults({});
    }
    expect(failing.code).toBe(1);
    expect(failing.stdout).toMatch(/NOT CONFORMANT/);
    expect(failing.stdout).toMatch(/identity\.probe \[Core\]/);
    const unreachable = await cli(["--target", "127.0.0.1:1", "--quiet"]);
    expect(unreachable.code).toBe(78);
  }, 60_000);

  it("exits 3 (incomplete) when a Core test is skipped: a preloaded model without the conformance weights", async () => {
    const preloaded = await serveMockDevice({ profile: "instant", models: ["opal-tiny"] });
    try {
      const config = join(dir, "vendor.yaml");
      writeFileSync(config, "model: opal-tiny\n");
      const junit = join(dir, "incomplete.xml");
      const run = await cli([
        ...["--target", preloaded.address, "--config", config, "--junit", junit, "--quiet"],
        ...["--focus", "^(prefill\\.kv-matches-reference|stream\\.digest)$"],
      ]);
      expect(run.code, run.stdout + run.stderr).toBe(3);
      expect(run.stdout).toMatch(/^INCOMPLETE: /m);
      expect(run.stdout).toMatch(/Core test prefill\.kv-matches-reference was skipped: /);
      expect(readFileSync(junit, "utf8")).toMatch(
        /<failure message="Core test skipped[^"]*" type="incomplete">/,
      );
    } finally {
      await preloaded.close({ graceMs: 0 });
    }
  }, 60_000);

  it("lists the tests without a target, and needs one otherwise", async () => {
    const run = await cli(["--list"]);
    expect(run.code).toBe(0);
    const missing = await cli(["--quiet"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("--target <host:port> is required (except with --list)");
    expect(run.stdout).toMatch(/^identity\.get-info \[Core\] VER-1/m);
    expect(run.stdout).toMatch(/^push\.handoff \[Optional\(push\)\]/m);
  });
});
