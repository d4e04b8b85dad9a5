import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const opal = fileURLToPath(new URL("../dist/opal.js", import.meta.url));
const built = existsSync(opal);
if (!built && process.env.CI)
  throw new Error(`${opal} is missing: npm test builds it before running tests`);

/** Runs the built `opal` executable as a user would; resolves with its exit code and output. */
async function opalCli(args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, [opal, ...args], { timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe.skipIf(!built)("the opal executable", () => {
  it("runs the demo: prefill over gRPC, layer-by-layer handoff, decode matching a monolithic run", async () => {
    const { code, stdout } = await opalCli([
      "demo",
      "--json",
      "--model",
      "opal-tiny",
      "--tokens",
      "8",
      "--prompt",
      "hello OPAL",
    ]);
    expect(code).toBe(0);
    const report = JSON.parse(stdout);
    expect(report.match).toBe(true);
    expect(report.promptTokens).toBe(11);
    expect(report.generatedTokens).toHaveLength(8);
    expect(report.generatedTokens).toEqual(report.monolithicTokens);
    expect(report.layersStreamed).toBe(2);
    expect(report.kvBytes).toBe(11 * 2 * 2 * 16 * 4 * 2);
    expect(report.projection.kvBytes).toBe(11 * 32 * 2 * 8 * 128 * 2);
  });

  it("prints a readable summary by default", async () => {
    const { code, stdout } = await opalCli(["demo", "--model", "opal-tiny", "--tokens", "4"]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/layer 1\/2 pushed, verified and loaded by the decode agent/);
    expect(stdout).toMatch(/matches monolithic run\s+yes \(4 tokens\)/);
    expect(stdout).toMatch(/time to first layer\s+\d/);
  });

  it("rejects bad flags with a message and a non-zero exit", async () => {
    const badModel = await opalCli(["demo", "--model", "gpt-9"]);
    expect(badModel.code).not.toBe(0);
    expect(badModel.stderr).toMatch(/Allowed choices are opal-tiny, opal-small/);
    const badTokens = await opalCli(["demo", "--tokens", "zero"]);
    expect(badTokens.stderr).toMatch(/--tokens must be a whole number >= 1/);
    const unknown = await opalCli(["fly"]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/unknown command 'fly'/);
  });

  it("has --help on every command", async () => {
    const { stdout } = await opalCli(["demo", "--help"]);
    expect(stdout).toMatch(/--prompt <text>/);
  });
});
