import { createHash } from "node:crypto";
import { createDeviceClient, type DeviceClient } from "@opal/client";
import { Code } from "@opal/core";
import { createMockDevice } from "@opal/mock";
import { createPresetWeights, encodeHfCheckpoint } from "@opal/reference";
import { collectPrefill, expectOpalError } from "@opal/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDeviceServer, type DeviceServer } from "../src/index";
import { tinyRequest } from "./fixtures";

async function* pieces(bytes: Uint8Array, size: number): AsyncIterable<Uint8Array> {
  for (let offset = 0; offset < bytes.byteLength; offset += size)
    yield bytes.subarray(offset, offset + size);
}

describe("LoadModel and WatchTelemetry over gRPC", () => {
  let server: DeviceServer;
  let client: DeviceClient;
  beforeAll(async () => {
    server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }));
    client = createDeviceClient(server.address);
  });
  afterAll(async () => {
    await client.close();
    await server.shutdown({ graceMs: 0 });
  });

  it("loads a model by device-local reference, idempotently, and prefills with it", async () => {
    const load = { modelId: "tiny-copy", configJson: "{}", deviceLocalRef: "opal-tiny" };
    const first = await client.loadModel(load);
    expect(first).toMatchObject({ alreadyLoaded: false, model: { modelId: "tiny-copy" } });
    expect((await client.loadModel(load)).alreadyLoaded).toBe(true);
    expect((await client.listModels()).map((m) => m.modelId)).toContain("tiny-copy");
    await collectPrefill(client.prefill(tinyRequest({ modelId: "tiny-copy" })));
    expect(await client.unloadModel("tiny-copy")).toEqual({ wasLoaded: true });
  });

  it("refuses weights declared over max_model_bytes with MESSAGE_TOO_LARGE before reading them", async () => {
    const capabilities = await client.getCapabilities();
    const error = await expectOpalError(
      client.loadModel({
        modelId: "too-big",
        configJson: "{}",
        weights: pieces(new Uint8Array(16), 16),
        weightsByteLength: capabilities.maxModelBytes + 1,
      }),
      Code.RESOURCE_EXHAUSTED,
      "MESSAGE_TOO_LARGE",
    );
    expect(error.message).toContain(String(capabilities.maxModelBytes));
  });

  it("uploads streamed safetensors weights, checked against their sha256, and prefills with them", async () => {
    const { configJson, safetensors } = encodeHfCheckpoint(createPresetWeights("opal-tiny"));
    const sha256 = createHash("sha256").update(safetensors).digest("hex");
    const loaded = await client.loadModel({
      modelId: "uploaded-tiny",
      configJson,
      weights: pieces(safetensors, 64 * 1024),
      weightsByteLength: safetensors.byteLength,
      weightsSha256: sha256,
    });
    expect(loaded.alreadyLoaded).toBe(false);
    const preset = (await client.listModels()).find((m) => m.modelId === "opal-tiny")!;
    expect(loaded.model.fingerprint).toBe(preset.fingerprint);
    const ours = await collectPrefill(client.prefill(tinyRequest({ modelId: "uploaded-tiny" })));
    const theirs = await collectPrefill(client.prefill(tinyRequest()));
    expect(ours.stats.kvDigest).toEqual(theirs.stats.kvDigest);
    await client.unloadModel("uploaded-tiny");
  });

  it("checks streamed weights against the declared length and sha256 (MODEL_WEIGHTS_INVALID)", async () => {
    const { configJson, safetensors } = encodeHfCheckpoint(createPresetWeights("opal-tiny"));
    const sha256 = createHash("sha256").update(safetensors).digest("hex");
    const upload = (patch: { weightsByteLength?: number; weightsSha256?: string }) =>
      client.loadModel({
        modelId: "bad-upload",
        configJson,
        weights: pieces(safetensors, 64 * 1024),
        weightsByteLength: safetensors.byteLength,
        weightsSha256: sha256,
        ...patch,
      });
    const long = await expectOpalError(
      upload({ weightsByteLength: safetensors.byteLength + 1 }),
      Code.INVALID_ARGUMENT,
      "MODEL_WEIGHTS_INVALID",
    );
    expect(long.message).toContain(`header declared ${safetensors.byteLength + 1}`);
    const short = await expectOpalError(
      upload({ weightsByteLength: safetensors.byteLength - 1 }),
      Code.INVALID_ARGUMENT,
      "MODEL_WEIGHTS_INVALID",
    );
    expect(short.message).toContain(`more than the declared ${safetensors.byteLength - 1}`);
    const tampered = await expectOpalError(
      upload({ weightsSha256: "0".repeat(64) }),
      Code.INVALID_ARGUMENT,
      "MODEL_WEIGHTS_INVALID",
    );
    expect(tampered.message).toContain("sha256");
    expect((await client.listModels()).map((m) => m.modelId)).toEqual(["opal-tiny"]);
  });

  it("streams telemetry snapshots at the asked interval until the caller stops", async () => {
    const controller = new AbortController();
    const snapshots: number[] = [];
    const startedMs = performance.now();
    for await (const snapshot of client.watchTelemetry(
      { intervalMs: 50 },
      { signal: controller.signal },
    )) {
      snapshots.push(snapshot.timestampUnixMs);
      expect(snapshot.activePrefills).toBe(0);
      if (snapshots.length === 3) break;
    }
    expect(performance.now() - startedMs).toBeGreaterThanOrEqual(90);
    expect(snapshots).toEqual([...snapshots].sort((a, b) => a - b));
  });

  it("clamps an interval above 60 s to 60 s instead of flooding the caller (interval_ms)", async () => {
    const controller = new AbortController();
    let snapshots = 0;
    const watching = (async () => {
      for await (const _ of client.watchTelemetry(
        { intervalMs: 2 ** 32 - 1 },
        { signal: controller.signal },
      ))
        snapshots++;
    })().catch(() => undefined);
    await expect.poll(() => snapshots).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(snapshots).toBe(1);
    controller.abort();
    await watching;
  });
});
