import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createDeviceClient } from "@opal/client";
import { Code } from "@opal/core";
import { createPresetWeights, createReferenceModel } from "@opal/reference";
import { collectPrefill, expectOpalError } from "@opal/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../../", import.meta.url));
/** `opal-mock` from source, as `node` runs the built one. */
const opalMock = [
  "--conditions=source",
  "--import",
  "tsx",
  fileURLToPath(new URL("../bin/opal-mock.ts", import.meta.url)),
];

/** Runs `opal-mock args` to its end; resolves with its exit code and output. */
async function runOpalMock(args: string[]) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...opalMock, ...args], {
      cwd: root,
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A running `opal-mock`, with what it printed so far. */
interface RunningMock {
  readonly child: ChildProcess;
  readonly address: string;
  output(): string;
}

function startOpalMock(args: string[]): Promise<RunningMock> {
  const child = spawn(process.execPath, [...opalMock, ...args], { cwd: root });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString("utf8");
  });
  child.stderr.on("data", (d: Buffer) => {
    out += d.toString("utf8");
  });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => {
      clearInterval(poll);
      reject(new Error(`opal-mock exited ${code}: ${out}`));
    };
    child.once("exit", onExit);
    const poll = setInterval(() => {
      const match = /listening on (\S+)/.exec(out);
      if (!match) return;
      clearInterval(poll);
      child.off("exit", onExit);
      resolve({ child, address: match[1]!, output: () => out });
    }, 20);
  });
}

function exitCode(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "opal-mock-cli-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("opal-mock, as its users run it", () => {
  it("rejects bad flags before listening: exit 2 (usage; 67 for a bad fault file), expected and actual, no stack trace", async () => {
    const typo = join(dir, "typo.yaml");
    writeFileSync(typo, "abortAfterChunk: 3\n");
    const cases: [string[], string, number][] = [
      [["--port", "70000"], "--port must be a whole number in 0..65535 (got 70000)", 2],
      [["--port", ""], "--port must be a whole number in 0..65535 (got )", 2],
      [["--metrics-port", "1e3"], "--metrics-port must be a whole number in 0..65535 (got 1e3)", 2],
      [["--max-concurrent", "0"], "--max-concurrent must be a whole number >= 1 (got 0)", 2],
      [
        ["--stall-timeout-ms", "0"],
        "--stall-timeout-ms must be a whole number in 1..2147483647 (got 0)",
        2,
      ],
      [
        ["--stall-timeout-ms", "2147483648"],
        "--stall-timeout-ms must be a whole number in 1..2147483647 (got 2147483648)",
        2,
      ],
      [
        ["--max-concurrent-per-tenant", "x"],
        "--max-concurrent-per-tenant must be a whole number >= 1 (got x)",
        2,
      ],
      [
        ["--port", "0", "--push-target", "receiver"],
        "--push-target expects host:port (got receiver)",
        2,
      ],
      [["--port", "0", "--token", "secret"], "--token expects token=tenant (got secret)", 2],
      [
        ["--port", "0", "--profile", "h200"],
        "--profile must be one of iris-nova, h100, instant, optical (got h200)",
        2,
      ],
      [
        ["--port", "0", "--faults", typo],
        `[invalid_argument] fault config ${typo}: faults.abortAfterChunk is not a fault (expected one of`,
        67,
      ],
    ];
    for (const [args, message, exitCode] of cases) {
      const result = await runOpalMock(args);
      expect(result.code, args.join(" ")).toBe(exitCode);
      expect(result.stderr, args.join(" ")).toContain(message);
      expect(result.stderr, args.join(" ")).not.toMatch(/^\s+at /m);
      expect(result.stdout, args.join(" ")).not.toContain("listening on");
    }
  }, 90_000);

  it("rejects an error bound outside (0, 1) and the optical flags with another profile", async () => {
    const cases: [string[], string][] = [
      [["--error-bound", "1.5"], "--error-bound must be a number between 0 and 1 (got 1.5)"],
      [
        ["--port", "0", "--noise-seed", "7"],
        "--error-bound and --noise-seed apply to --profile optical (got --profile iris-nova)",
      ],
    ];
    for (const [args, message] of cases) {
      const result = await runOpalMock(args);
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stderr, args.join(" ")).toContain(message);
      expect(result.stdout, args.join(" ")).not.toContain("listening on");
    }
  });

  it("--profile optical declares its bound and serves seeded K and V noise within it", async () => {
    const mock = await startOpalMock([
      "--port",
      "0",
      "--profile",
      "optical",
      "--error-bound",
      "0.05",
      "--noise-seed",
      "7",
    ]);
    const client = createDeviceClient(mock.address);
    try {
      expect((await client.getCapabilities()).numerics).toEqual({
        deviceKind: "optical",
        precisionPath: "optical matmul, 6-bit ADC per row, f32 digital accumulate",
        bitExact: false,
        maxAbsError: 0.05,
        maxRelError: 0.05,
      });
      const tokens = Uint32Array.of(256, ...Buffer.from("noisy optical prefill"));
      const request = {
        modelId: "opal-tiny",
        promptTokenIds: tokens,
        kvFormat: { dtype: "f32", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
      } as const;
      const a = await collectPrefill(client.prefill({ ...request, requestId: "a" }));
      const b = await collectPrefill(client.prefill({ ...request, requestId: "b" }));
      expect(b.stats.kvDigest).toEqual(a.stats.kvDigest); // seeded: the same bytes again
      const exact = createReferenceModel(createPresetWeights("opal-tiny")).prefill(tokens).cache;
      let largest = 0;
      for (const { layer, parts } of a.layers) {
        for (const [part, rows] of [
          ["k", exact.keys[layer]!],
          ["v", exact.values[layer]!],
        ] as const) {
          const got = new Float32Array(parts[part]!.slice().buffer);
          got.forEach((x, i) => {
            const error = Math.abs(x - rows[i]!);
            expect(error).toBeLessThanOrEqual(0.05 + 0.05 * Math.abs(rows[i]!) + 1e-6);
            largest = Math.max(largest, error);
          });
        }
      }
      expect(largest).toBeGreaterThan(0.025);
    } finally {
      await client.close();
      mock.child.kill("SIGTERM");
      expect(await exitCode(mock.child)).toBe(0);
    }
  });

  it("maps a base64 token with = padding to its tenant (split at the last =)", async () => {
    const mock = await startOpalMock([
      "--port",
      "0",
      "--profile",
      "instant",
      "--push-target",
      "127.0.0.1:9",
      "[::1]:9",
      "--token",
      "dG9rZW4==tenant-a",
    ]);
    const client = createDeviceClient(mock.address, { token: "dG9rZW4=" });
    try {
      expect((await client.getInfo()).protocolVersion).toBe("1.0.0");
      expect(mock.output()).toContain("push targets: only 127.0.0.1:9, [::1]:9");
    } finally {
      await client.close();
      mock.child.kill("SIGTERM");
      expect(await exitCode(mock.child)).toBe(0);
    }
  });

  it("holds each tenant to --max-concurrent-per-tenant and says so at start-up (issue #18 item 1)", async () => {
    const faults = join(dir, "hold.yaml");
    writeFileSync(faults, "stallAfterChunks: 1\nstallMs: 60000\n");
    const mock = await startOpalMock([
      "--port",
      "0",
      "--profile",
      "instant",
      "--faults",
      faults,
      "--token",
      "t-a=tenant-a",
      "t-b=tenant-b",
      "--max-concurrent-per-tenant",
      "1",
      "--stall-timeout-ms",
      "800",
    ]);
    const a = createDeviceClient(mock.address, { token: "t-a" });
    const b = createDeviceClient(mock.address, { token: "t-b" });
    const request = (requestId: string) => ({
      requestId,
      modelId: "opal-tiny",
      promptTokenIds: Uint32Array.of(256, 1, 2, 3),
      kvFormat: {
        dtype: "f32" as const,
        scaleScheme: "none" as const,
        layout: "nhd" as const,
        blockSizeTokens: 16,
      },
    });
    try {
      expect(mock.output()).toContain(
        "push targets: only the caller's own address (no --push-target list)",
      );
      expect(mock.output()).toContain(
        "per tenant: 1 concurrent prefills, unlimited requests/s, 268435456 retained bytes in 1024 caches; streams not read for 800 ms end",
      );
      // Tenant A's first prefill holds its one slot (the device stalls it after one chunk).
      const held = a.prefill(request("held"))[Symbol.asyncIterator]();
      while ((await held.next()).value?.type !== "chunk");
      await expectOpalError(
        (async () => {
          for await (const _ of a.prefill(request("second"))) break;
        })(),
        Code.RESOURCE_EXHAUSTED,
        "TENANT_QUOTA_EXCEEDED",
      );
      // Tenant B has its own slot.
      const other = b.prefill(request("other"))[Symbol.asyncIterator]();
      expect((await other.next()).value?.type).toBe("accepted");
      await held.return?.();
      await other.return?.();
    } finally {
      await a.close();
      await b.close();
      mock.child.kill("SIGTERM");
      expect(await exitCode(mock.child)).toBe(0);
    }
  });

  it("exits at once, 130, on a second signal while the graceful shutdown waits for a running call", async () => {
    const faults = join(dir, "stall.yaml");
    writeFileSync(faults, "stallAfterChunks: 1\nstallMs: 60000\n");
    const mock = await startOpalMock(["--port", "0", "--profile", "instant", "--faults", faults]);
    const client = createDeviceClient(mock.address);
    try {
      // A prefill that stalls after its first chunk: the graceful shutdown waits 5 s for it.
      const events = client
        .prefill({
          requestId: "stalled",
          modelId: "opal-tiny",
          promptTokenIds: Uint32Array.of(256, 1, 2, 3),
          kvFormat: { dtype: "f32", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
          maxChunkBytes: 256,
        })
        [Symbol.asyncIterator]();
      while ((await events.next()).value?.type !== "chunk");
      const stalled = events.next().catch(() => {});
      mock.child.kill("SIGTERM");
      await expect.poll(mock.output).toContain("opal-mock: SIGTERM, shutting down");
      expect(mock.child.exitCode).toBe(null);
      const secondAt = performance.now();
      mock.child.kill("SIGINT");
      expect(await exitCode(mock.child)).toBe(130);
      expect(performance.now() - secondAt).toBeLessThan(2_000);
      expect(mock.output()).toContain("opal-mock: SIGINT again, exiting without waiting");
      await stalled;
    } finally {
      await client.close();
      if (mock.child.exitCode === null) mock.child.kill("SIGKILL");
    }
  });

  it("keeps serving with the faults in force when SIGHUP reloads a bad file, and applies a good one", async () => {
    const faults = join(dir, "faults.yaml");
    writeFileSync(faults, "errors:\n  ListModels: { rate: 1 }\n");
    const mock = await startOpalMock(["--port", "0", "--profile", "instant", "--faults", faults]);
    const client = createDeviceClient(mock.address);
    try {
      await expectOpalError(client.listModels(), Code.UNAVAILABLE, "DEVICE_FAULT");
      writeFileSync(faults, "errors:\n  ListModels: { rate: 2 }\n");
      mock.child.kill("SIGHUP");
      await expect
        .poll(mock.output)
        .toContain(
          `opal-mock: [invalid_argument] fault config ${faults}: faults.errors.ListModels.rate must be in [0, 1] (got 2); keeping the previous faults`,
        );
      expect(mock.child.exitCode).toBe(null);
      await expectOpalError(client.listModels(), Code.UNAVAILABLE, "DEVICE_FAULT");
      writeFileSync(faults, "{}\n");
      mock.child.kill("SIGHUP");
      await expect.poll(mock.output).toContain(`opal-mock: reloaded faults from ${faults}`);
      expect((await client.listModels()).map((m) => m.modelId)).toEqual(["opal-tiny"]);
    } finally {
      await client.close();
      mock.child.kill("SIGTERM");
      expect(await exitCode(mock.child)).toBe(0);
    }
  });
});
