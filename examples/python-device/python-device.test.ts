import { type ChildProcess, execFile, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { type ConformanceReport, formatResultLine, runConformance } from "@opal/conformance";
import { createTestCertificates, PYTHON } from "@opal/testing";
import { afterEach, beforeAll, describe, expect, it } from "vitest";

const DEVICE = fileURLToPath(new URL("./opal_device.py", import.meta.url));

/** Skip reason when Debian's Python stack is missing locally; under CI a missing stack is an error. */
let missing: string | undefined;
beforeAll(async () => {
  try {
    await promisify(execFile)(PYTHON, ["-c", "import grpc, google.protobuf, numpy, xxhash"]);
    await promisify(execFile)("protoc", ["--version"]);
    await promisify(execFile)("/usr/bin/grpc_python_plugin", ["--version"]).catch((error) => {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") throw error;
    });
  } catch (error) {
    missing = `the Python device needs ${PYTHON} with python3-grpcio, python3-protobuf, python3-numpy, python3-xxhash and protoc with grpc_python_plugin: ${(error as Error).message}`;
    if (process.env.CI) throw new Error(missing);
  }
});

const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill();
});

/** Starts the device on a free port with `args` and resolves with the address it prints. */
function startDevice(args: readonly string[] = []): Promise<string> {
  const child = spawn(PYTHON, [DEVICE, "--port", "0", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  let err = "";
  child.stderr!.on("data", (data: Buffer) => {
    err += data.toString("utf8");
  });
  return new Promise((resolve, reject) => {
    const onData = (data: Buffer) => {
      out += data.toString("utf8");
      const match = /listening on (\S+)/.exec(out);
      if (match) {
        child.stdout!.off("data", onData);
        resolve(match[1]!);
      }
    };
    child.stdout!.on("data", onData);
    child.once("exit", (code) =>
      reject(new Error(`opal_device.py exited with ${code}: ${out}${err}`)),
    );
  });
}

/** Runs the prefill tests (the ones that judge KV, first token and formats) against a faulty device. */
async function runPrefillTests(fault: string): Promise<ConformanceReport> {
  const target = await startDevice(["--fault", fault]);
  return runConformance({ target, focus: /^prefill\./ });
}

function failure(report: ConformanceReport, id: string): string {
  const result = report.results.find((r) => r.id === id);
  expect(result?.status, `${id} should fail`).toBe("failed");
  return result?.message ?? "";
}

describe("examples/python-device: a grpcio + numpy device written from the spec", () => {
  it("passes every Core test of the conformance suite, over TLS with two tenants' tokens", async (ctx) => {
    if (missing) return ctx.skip(missing);
    const certs = await createTestCertificates();
    let report: ConformanceReport;
    try {
      const cert = join(certs.dir, "device.crt");
      const key = join(certs.dir, "device.key");
      writeFileSync(cert, certs.serverCertPem);
      writeFileSync(key, certs.serverKeyPem);
      const target = await startDevice([
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--token",
        "ta=tenant-a",
        "--token",
        "tb=tenant-b",
      ]);
      report = await runConformance({
        target,
        token: "ta",
        tokenB: "tb",
        tls: { caPem: certs.caPem, serverNameOverride: "localhost" },
      });
    } finally {
      await certs.cleanup();
    }
    const core = report.results.filter((r) => r.tag === "Core");
    const notPassed = core.filter((r) => r.status !== "passed").map(formatResultLine);
    expect(notPassed).toEqual([]);
    expect(core.length).toBeGreaterThan(50);
    // Bearer tokens (SEC-4) and tenant-scoped request ids (PF-4) are checked too.
    const optional = ["auth.token-required", "tenants.request-ids-scoped"];
    expect(report.results.filter((r) => optional.includes(r.id)).map((r) => r.status)).toEqual([
      "passed",
      "passed",
    ]);
    expect(report.problems).toEqual([]);
    // The verdict that certifies a device: every Core test ran and passed.
    expect({ verdict: report.verdict, ok: report.ok }).toEqual({ verdict: "conformant", ok: true });
    // The KV was judged on the uploaded conformance weights, not skipped.
    expect(report.model).toMatchObject({ conformanceWeights: true, uploaded: true });
  }, 60_000);

  it("gives a freed slot to the lowest priority waiting, equal priorities in arrival order (PF-50)", async (ctx) => {
    if (missing) return ctx.skip(missing);
    // One slot, held; four waiters queued in this order; then the slot is freed.
    const script = `
import sys, threading, time
from opal_device import Slots
slots = Slots(1, 4)
held = slots.admit(0)
assert slots.wait_for_slot(held, lambda: True)
order = []
def wait(name, ticket):
    slots.wait_for_slot(ticket, lambda: True)
    order.append(name)
    slots.release()
threads = [threading.Thread(target=wait, args=(name, slots.admit(priority)))
           for name, priority in [("batch-1", 5), ("batch-2", 5), ("interactive", -1), ("default", 0)]]
for thread in threads: thread.start()
time.sleep(0.2)
slots.release()
for thread in threads: thread.join(5)
print(",".join(order))
`;
    const { stdout } = await promisify(execFile)(PYTHON, ["-c", script], {
      cwd: fileURLToPath(new URL(".", import.meta.url)),
    });
    expect(stdout.trim()).toBe("interactive,default,batch-1,batch-2");
  });

  it("with made-up KV (--fault garbage-kv) fails the numerics tests naming PF-38", async (ctx) => {
    if (missing) return ctx.skip(missing);
    const report = await runPrefillTests("garbage-kv");
    for (const id of ["prefill.kv-matches-reference", "prefill.formats", "prefill.head-range"]) {
      expect(failure(report, id)).toMatch(/PF-38: .*exceeds the declared bound/);
    }
  }, 30_000);

  it("with a bf16 total_bytes computed from 4-byte elements fails prefill.formats naming PF-12 and the size", async (ctx) => {
    if (missing) return ctx.skip(missing);
    const report = await runPrefillTests("bf16-total-bytes");
    const message = failure(report, "prefill.formats");
    // Today: "KV_DTYPE_BF16 ...: PF-12: ... descriptor.total_bytes: expected 6144 (from the shape), got 12288".
    expect(message).toMatch(/BF16/);
    expect(message).toMatch(/PF-1[28]\b/);
    expect(message).toMatch(/total_bytes/);
    // f32 is sized right: the test that only uses the first declared dtype passes.
    expect(report.results.find((r) => r.id === "prefill.kv-matches-reference")?.status).toBe(
      "passed",
    );
  }, 30_000);

  it("with a first token at vocab_size fails prefill.first-token naming the rule", async (ctx) => {
    if (missing) return ctx.skip(missing);
    const report = await runPrefillTests("first-token-out-of-vocab");
    // Today PF-39 ("first token 258 has reference logit undefined"); a vocabulary check may name
    // PF-17 instead. Either way the rule and the id.
    const message = failure(report, "prefill.first-token");
    expect(message).toMatch(/PF-\d+/);
    expect(message).toMatch(/\b258\b/);
  }, 30_000);
});
