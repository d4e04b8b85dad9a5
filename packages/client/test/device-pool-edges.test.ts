import { Code, OpalError, Reason } from "@opal/core";
import type { PrefillRequest } from "@opal/driver";
import { createMockDevice, type MockServer, serveMockDevice } from "@opal/mock";
import { createPresetWeights, encodeHfCheckpoint } from "@opal/reference";
import { expectOpalError } from "@opal/testing";
import { afterEach, describe, expect, it } from "vitest";
import { createDeviceClient } from "../src/device-client/create-device-client";
import { createDevicePool } from "../src/pool/create-device-pool";
import type { DevicePool, DevicePoolOptions } from "../src/pool/device-pool-options";
import { startPrefill } from "../src/prefill/start-prefill";

let n = 0;
const request = (patch: Partial<PrefillRequest> = {}): PrefillRequest => ({
  requestId: `pool-edges-${process.pid}-${++n}`,
  modelId: "opal-tiny",
  promptTokenIds: Uint32Array.from({ length: 48 }, (_, i) => (i * 7 + 3) % 250),
  kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  maxChunkBytes: 1024,
  ...patch,
});

const opened: { servers: MockServer[]; pools: DevicePool[] } = { servers: [], pools: [] };
afterEach(async () => {
  await Promise.all(opened.pools.splice(0).map((p) => p.close()));
  await Promise.all(opened.servers.splice(0).map((s) => s.close({ graceMs: 0 })));
});

/** Two mocks served over gRPC and a pool of real clients to them, without health watching. */
async function servedPool(models: readonly string[]) {
  const servers = await Promise.all([0, 1].map(() => serveMockDevice({ models }, { port: 0 })));
  opened.servers.push(...servers);
  const pool = await createDevicePool(
    servers.map((s) => s.address),
    { health: false },
  );
  opened.pools.push(pool);
  return { pool, servers: servers as [MockServer, MockServer] };
}

describe("device pool edges, over gRPC", () => {
  it("prefix affinity never sends a prompt to a device for the same tokens of another model", async () => {
    const { pool, servers } = await servedPool(["opal-tiny", "opal-small"]);
    const tokens = request().promptTokenIds;
    await startPrefill(pool, request({ promptTokenIds: tokens })).result;
    const small = () => request({ modelId: "opal-small", promptTokenIds: tokens });
    const first = await startPrefill(pool, small()).result;
    const again = await startPrefill(pool, small()).result;
    // opal-tiny's prefix went to the first device; opal-small's found no prefix of its own there,
    // went by load to the second, and its repeat followed it there and hit its cached blocks.
    expect(pool.devices.map((d) => [d.target, d.prefills])).toEqual([
      [servers[0].address, 1],
      [servers[1].address, 2],
    ]);
    expect(first.stats.prefixCacheHitTokens).toBe(0);
    expect(again.stats.prefixCacheHitTokens).toBeGreaterThan(0);
  });

  it("a retry avoids the device whose chunk failed its CRC, though that device's stream never failed", async () => {
    const { pool, servers } = await servedPool(["opal-tiny"]);
    const [corrupting, healthy] = servers;
    const tokens = request().promptTokenIds;
    // The prompt's prefix now lives on the first device, so affinity sends the next one there.
    await startPrefill(pool, request({ promptTokenIds: tokens })).result;
    corrupting.device.setFaults({ corruptChunk: 1 });
    const outcome = await startPrefill(pool, request({ promptTokenIds: tokens }), {
      retry: { maxAttempts: 2, initialBackoffMs: 1 },
    }).result;
    expect(outcome.transfer.attempts).toBe(2);
    expect(outcome.kvHandle.startsWith(`${encodeURIComponent(healthy.address)}|`)).toBe(true);
    expect(corrupting.device.stats.faultsInjected).toBe(1);
  });

  it("uploads a stream of weights to every device of the pool", async () => {
    const { pool, servers } = await servedPool([]);
    const { configJson, safetensors } = encodeHfCheckpoint(createPresetWeights("opal-tiny"), {
      dtype: "bf16",
    });
    const loaded = await pool.loadModel({
      modelId: "uploaded-tiny",
      configJson,
      weightsByteLength: safetensors.byteLength,
      weights: (async function* () {
        for (let at = 0; at < safetensors.byteLength; at += 64 * 1024)
          yield safetensors.subarray(at, at + 64 * 1024);
      })(),
    });
    expect(loaded.alreadyLoaded).toBe(false);
    for (const server of servers) {
      const models = await server.device.listModels();
      expect(models.map((m) => m.fingerprint)).toEqual([loaded.model.fingerprint]);
    }
  });
});

describe("device pool uploads", () => {
  it("a device that refuses an upload before reading it does not stall the others' upload", async () => {
    const served = await serveMockDevice({ models: [] }, { port: 0 });
    opened.servers.push(served);
    const refusing = createMockDevice({ models: [] });
    const pool = await createDevicePool(["refusing:1", served.address], {
      health: false,
      connect: (target) =>
        target === "refusing:1"
          ? {
              ...refusing,
              loadModel: async () => {
                throw new OpalError(Code.RESOURCE_EXHAUSTED, "no room for weights");
              },
            }
          : createDeviceClient(target),
    });
    opened.pools.push(pool);
    const { configJson, safetensors } = encodeHfCheckpoint(createPresetWeights("opal-tiny"), {
      dtype: "bf16",
    });
    await expectOpalError(
      pool.loadModel({
        modelId: "uploaded-tiny",
        configJson,
        weightsByteLength: safetensors.byteLength,
        weights: (async function* () {
          for (let at = 0; at < safetensors.byteLength; at += 16 * 1024)
            yield safetensors.subarray(at, at + 16 * 1024);
        })(),
      }),
      Code.RESOURCE_EXHAUSTED,
    );
    let loaded: readonly unknown[] = [];
    for (let i = 0; i < 200 && loaded.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      loaded = await served.device.listModels();
    }
    expect(loaded).toHaveLength(1);
    await refusing.close();
  });
});

describe("createDevicePool options", () => {
  it.each<[string, unknown, DevicePoolOptions]>([
    ["targets", "127.0.0.1:1", {}],
    ["targets[1]", ["127.0.0.1:1", ""], {}],
    ["routing", ["127.0.0.1:1"], { routing: "random" as never }],
    ["maxInFlightPerDevice", ["127.0.0.1:1"], { maxInFlightPerDevice: 0 }],
    ["failureThreshold", ["127.0.0.1:1"], { failureThreshold: Number.NaN }],
    ["openMs", ["127.0.0.1:1"], { openMs: -1 }],
    ["health", ["127.0.0.1:1"], { health: true as never }],
    ["health.intervalMs", ["127.0.0.1:1"], { health: { intervalMs: 0 } }],
    ["dnsRefreshMs", ["127.0.0.1:1"], { dnsRefreshMs: 2 ** 31 }],
    ["connect", ["127.0.0.1:1"], { connect: "mock" as never }],
    [
      "client.channel.keepaliveTimeMs",
      ["127.0.0.1:1"],
      { client: { channel: { keepaliveTimeMs: 5 } } },
    ],
  ])("refuses a bad %s with INVALID_ARGUMENT naming it", async (field, targets, options) => {
    const error = await expectOpalError(
      createDevicePool(targets as string[], options),
      Code.INVALID_ARGUMENT,
      Reason.INVALID_FIELD,
    );
    expect(error.fieldViolations.map((v) => v.field)).toEqual([field]);
    expect(error.message).toMatch(/expected .+, got/);
  });
});
