import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createConformanceModel } from "@opal/conformance";
import type { MockServer } from "@opal/mock";
import { createPythonPeer, type PythonPeer } from "@opal/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serveConformanceMock, TOKEN_A } from "./mock-device";

const script = fileURLToPath(new URL("./python/interop_client.py", import.meta.url));

let peer: PythonPeer | string;
let mock: MockServer;
let dir: string;

beforeAll(async () => {
  // createPythonPeer throws under CI when Debian's python3-grpcio or protoc is missing.
  peer = await createPythonPeer();
  mock = await serveConformanceMock();
  dir = mkdtempSync(join(tmpdir(), "opal-conformance-py-"));
}, 120_000);

afterAll(async () => {
  if (typeof peer !== "string") peer?.dispose();
  await mock?.close({ graceMs: 0 });
  rmSync(dir, { recursive: true, force: true });
});

describe("Python interop (python3-grpcio, stubs generated from proto/)", () => {
  it("gets the info, uploads the conformance model, prefills inline and through shared memory, verifies every CRC32C and the digest", async (ctx) => {
    if (typeof peer === "string") return ctx.skip(peer);
    const model = createConformanceModel();
    const config = join(dir, "config.json");
    const weights = join(dir, "model.safetensors");
    writeFileSync(config, model.configJson);
    writeFileSync(weights, model.safetensors);
    const out = await peer.run(
      script,
      [mock.address, TOKEN_A, "opal-conformance/python", config, weights],
      { timeoutMs: 60_000 },
    );
    const summary = JSON.parse(out.trim().split("\n").at(-1)!);
    expect(summary).toMatchObject({
      ok: true,
      protocolVersion: "1.0.0",
      modelId: "opal-conformance/python",
      layers: 2,
      tokens: 25,
    });
    expect(summary.deviceId).toMatch(/^mock-/);
    expect(summary.fingerprint).toBe(model.reference.fingerprint);
    // 25 tokens x 2 KV heads x 16 dims x 4 bytes per part, K and V, 2 layers.
    expect(summary.totalBytes).toBe(25 * 2 * 16 * 4 * 2 * 2);
    expect(summary.completedBytes).toBe(summary.totalBytes);
    expect(summary.digest).toBe(summary.completedDigest);
    expect(summary.chunks).toBeGreaterThan(12);
    // The same prefill through a region the Python client created and mapped (PF-43).
    expect(summary.sharedMemoryDigest).toBe(summary.digest);
    expect(summary.sharedMemoryChunks).toBe(summary.chunks);
    // The first token equals the reference model's greedy choice for the same prompt.
    const { logits } = model.reference.prefill([256, ...Buffer.from("Hello from Python, OPAL!")]);
    expect(summary.firstTokenId).toBe(logits.indexOf(Math.max(...logits)));
  }, 90_000);
});
