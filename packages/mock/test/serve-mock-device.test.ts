import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDeviceClient, startPrefill } from "@opal/client";
import { Code, sleep } from "@opal/core";
import type { PrefillRequest } from "@opal/driver";
import { createPresetWeights, encodeHfCheckpoint } from "@opal/reference";
import { expectOpalError } from "@opal/testing";
import { describe, expect, it } from "vitest";
import { readFaultConfig, serveMockDevice } from "../src/serve-mock-device";

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

const request = (requestId: string, patch: Partial<PrefillRequest> = {}): PrefillRequest => ({
  requestId,
  modelId: "opal-tiny",
  promptTokenIds: Uint32Array.from({ length: 24 }, (_, i) => i + 2),
  kvFormat: { dtype: "f32", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  maxChunkBytes: 256,
  ...patch,
});

describe("serveMockDevice", () => {
  it("drops the connection mid-stream, then serves again on the same address", async () => {
    const mock = await serveMockDevice({
      models: ["opal-tiny"],
      faults: { dropConnectionAfterChunks: 3 },
    });
    const client = createDeviceClient(mock.address);
    try {
      const error = await expectOpalError(
        startPrefill(client, request("drop-1")).result,
        Code.UNAVAILABLE,
      );
      expect(error.message.length).toBeGreaterThan(0);
      mock.device.setFaults({});
      // The device comes back on the same port; a client reconnects (with grpc-js's backoff).
      await expect
        .poll(
          () =>
            client.probe().then(
              () => true,
              () => false,
            ),
          { timeout: 10_000, interval: 200 },
        )
        .toBe(true);
      const outcome = await startPrefill(client, request("drop-2")).result;
      expect(outcome.stats.promptTokens).toBe(24);
      expect(mock.address).toBe(`127.0.0.1:${mock.server.port}`);
    } finally {
      await client.close();
      await mock.close({ graceMs: 100 });
    }
  });

  it("closes for good when a dropped connection comes during the shutdown: no server listens again", async () => {
    // The stall holds the call while close() begins; the drop then comes during the grace period.
    const mock = await serveMockDevice({
      models: ["opal-tiny"],
      faults: { stallAfterChunks: 1, stallMs: 300, dropConnectionAfterChunks: 2 },
    });
    const client = createDeviceClient(mock.address);
    try {
      const run = startPrefill(client, request("drop-on-close")).result.catch((e: unknown) => e);
      await expect.poll(() => mock.device.stats.activePrefills).toBe(1);
      const started = performance.now();
      await mock.close({ graceMs: 5_000 });
      expect(performance.now() - started).toBeLessThan(2_000);
      expect(await run).toBeInstanceOf(Error);
      await sleep(200);
      expect(await isListening(mock.server.port)).toBe(false);
      await expect(mock.restart()).rejects.toThrow("[unavailable] the mock server is closed");
    } finally {
      await client.close();
    }
  });

  it("keeps retained caches across a restart, so a client can resume", async () => {
    const mock = await serveMockDevice({ models: ["opal-tiny"] });
    const client = createDeviceClient(mock.address);
    try {
      const first = await startPrefill(client, request("keep-1", { retentionSeconds: 60 })).result;
      await mock.restart();
      let chunks = 0;
      for await (const event of client.fetchKv({ kvHandle: first.kvHandle }))
        if (event.type === "chunk") chunks++;
      expect(chunks).toBeGreaterThan(0);
    } finally {
      await client.close();
      await mock.close({ graceMs: 100 });
    }
  });

  it("loads an uploaded Hugging Face checkpoint over gRPC, idempotently, and prefills with it", async () => {
    const mock = await serveMockDevice({ models: [] });
    const client = createDeviceClient(mock.address);
    try {
      const { configJson, safetensors } = encodeHfCheckpoint(createPresetWeights("opal-tiny"), {
        dtype: "bf16",
      });
      const upload = () =>
        client.loadModel({
          modelId: "uploaded-tiny",
          configJson,
          weightsByteLength: safetensors.byteLength,
          weights: (async function* () {
            for (let at = 0; at < safetensors.byteLength; at += 64 * 1024)
              yield safetensors.subarray(at, at + 64 * 1024);
          })(),
        });
      const loaded = await upload();
      expect(loaded.alreadyLoaded).toBe(false);
      expect(loaded.model).toMatchObject({
        modelId: "uploaded-tiny",
        numLayers: 2,
        vocabSize: 258,
      });
      expect((await upload()).alreadyLoaded).toBe(true);
      expect((await client.listModels()).map((m) => m.modelId)).toEqual(["uploaded-tiny"]);
      const outcome = await startPrefill(client, request("upload-1", { modelId: "uploaded-tiny" }))
        .result;
      expect(outcome.descriptor.modelFingerprint).toBe(loaded.model.fingerprint);
      await expectOpalError(
        client.loadModel({
          modelId: "bad",
          configJson: "{not json",
          weightsByteLength: 1,
          weights: (async function* () {
            yield Uint8Array.of(0);
          })(),
        }),
        Code.INVALID_ARGUMENT,
        "MODEL_CONFIG_INVALID",
      );
      await expectOpalError(
        client.loadModel({
          modelId: "short",
          configJson,
          weightsByteLength: safetensors.byteLength + 10,
          weights: (async function* () {
            yield safetensors;
          })(),
        }),
        Code.INVALID_ARGUMENT,
        "MODEL_WEIGHTS_INVALID",
      );
      expect(await client.unloadModel("uploaded-tiny")).toEqual({ wasLoaded: true });
      expect(await client.unloadModel("uploaded-tiny")).toEqual({ wasLoaded: false });
    } finally {
      await client.close();
      await mock.close({ graceMs: 100 });
    }
  });

  it("reads fault files in YAML and JSON and says what is wrong with a bad one", async () => {
    const dir = mkdtempSync(join(tmpdir(), "opal-faults-"));
    try {
      writeFileSync(
        join(dir, "f.yaml"),
        "seed: 3\nerrors:\n  Prefill: { rate: 0.5, code: UNAVAILABLE }\n",
      );
      expect(await readFaultConfig(join(dir, "f.yaml"))).toEqual({
        seed: 3,
        errors: { Prefill: { rate: 0.5, code: "UNAVAILABLE" } },
      });
      writeFileSync(join(dir, "f.json"), '{"latencyMs": 5}');
      expect(await readFaultConfig(join(dir, "f.json"))).toEqual({ latencyMs: 5 });
      writeFileSync(join(dir, "bad.yaml"), "- 1\n- 2\n");
      await expect(readFaultConfig(join(dir, "bad.yaml"))).rejects.toThrow(/must be a mapping/);
      writeFileSync(join(dir, "typo.yaml"), "errors:\n  Prefil: { rate: 1 }\n");
      await expect(readFaultConfig(join(dir, "typo.yaml"))).rejects.toThrow(
        `fault config ${join(dir, "typo.yaml")}: faults.errors.Prefil: unknown RPC (expected one of`,
      );
      await expect(readFaultConfig(join(dir, "missing.yaml"))).rejects.toThrow(
        /cannot read fault config/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
