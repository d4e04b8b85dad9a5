import { createDeviceClient, type DeviceClient } from "@opal/client";
import { Code } from "@opal/core";
import type { PrefillRequest } from "@opal/driver";
import { createDeviceServer, type DeviceServer } from "@opal/server";
import { collectPrefill, expectOpalError } from "@opal/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMockDevice } from "../src/create-mock-device";
import type { FaultConfig } from "../src/fault-config";
import type { MockDevice } from "../src/mock-device";

let device: MockDevice;
let server: DeviceServer;
let client: DeviceClient;
let counter = 0;

beforeAll(async () => {
  device = createMockDevice({ models: ["opal-tiny"], profile: "instant" });
  server = await createDeviceServer(device);
  client = createDeviceClient(server.address);
});
afterAll(async () => {
  await client.close();
  await server.shutdown({ graceMs: 100 });
});

const request = (patch: Partial<PrefillRequest> = {}): PrefillRequest => ({
  requestId: `fault-${++counter}`,
  modelId: "opal-tiny",
  promptTokenIds: Uint32Array.from({ length: 32 }, (_, i) => (i * 5) % 50),
  kvFormat: { dtype: "f32", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  maxChunkBytes: 512,
  ...patch,
});

describe("mock fault injection, as a gRPC client sees it", () => {
  it("injects an error with its code, reason and RetryInfo", async () => {
    device.setFaults({ errors: { Prefill: { rate: 1, code: "UNAVAILABLE" } } });
    const error = await expectOpalError(
      collectPrefill(client.prefill(request())),
      Code.UNAVAILABLE,
      "DEVICE_FAULT",
    );
    expect(error.retryDelayMs).toBe(10);
    device.setFaults({
      errors: { GetInfo: { rate: 1, code: "RESOURCE_EXHAUSTED", reason: "DEVICE_BUSY" } },
    });
    await expectOpalError(client.getInfo(), Code.RESOURCE_EXHAUSTED, "DEVICE_BUSY");
    await collectPrefill(client.prefill(request()));
  });

  it("injects errors at the configured rate, reproducibly for a seed", async () => {
    const outcomes = async () => {
      device.setFaults({ seed: 7, errors: { Probe: { rate: 0.5 } } });
      const results: boolean[] = [];
      for (let i = 0; i < 40; i++)
        results.push(
          await client.probe().then(
            () => true,
            () => false,
          ),
        );
      return results;
    };
    const first = await outcomes();
    expect(await outcomes()).toEqual(first);
    const failures = first.filter((ok) => !ok).length;
    expect(failures).toBeGreaterThan(8);
    expect(failures).toBeLessThan(32);
  });

  it("adds latency", async () => {
    device.setFaults({ latencyMs: 150 });
    const started = performance.now();
    await client.getInfo();
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
  });

  it("aborts a stream after N chunks: the client gets UNAVAILABLE and no cache", async () => {
    device.setFaults({ abortAfterChunks: 3 });
    let chunks = 0;
    await expectOpalError(
      (async () => {
        for await (const event of client.prefill(request())) if (event.type === "chunk") chunks++;
      })(),
      Code.UNAVAILABLE,
      "DEVICE_FAULT",
    );
    expect(chunks).toBe(3);
  });

  it("corrupts a chunk: the client's CRC check fails with DATA_LOSS", async () => {
    device.setFaults({ corruptChunk: 2 });
    await expectOpalError(
      collectPrefill(client.prefill(request())),
      Code.DATA_LOSS,
      "CHECKSUM_MISMATCH",
    );
  });

  it("stalls the producer: the caller's deadline ends the call and frees the slot", async () => {
    device.setFaults({ stallAfterChunks: 1, stallMs: 30_000 });
    await expectOpalError(
      collectPrefill(client.prefill(request(), { timeoutMs: 300 })),
      Code.DEADLINE_EXCEEDED,
    );
    await expect.poll(() => device.stats.activePrefills, { timeout: 5_000 }).toBe(0);
  });

  it("throttles under a power cap and reports it in telemetry", async () => {
    const nova = createMockDevice({ models: ["llama-3-8b"], profile: "iris-nova" });
    const big = { modelId: "llama-3-8b", maxChunkBytes: 1 << 20 };
    const free = await collectPrefill(nova.prefill(request(big)));
    nova.setFaults({ powerCapWatts: 600 });
    const capped = await collectPrefill(
      nova.prefill(request({ ...big, cacheSalt: "no-prefix-hit" })),
    );
    expect(free.stats.deviceTimeUs).toBeGreaterThan(0);
    expect(capped.stats.deviceTimeUs).toBeGreaterThan(free.stats.deviceTimeUs * 1.9);
    for await (const snapshot of nova.watchTelemetry({})) {
      expect(snapshot.conditions.map((c) => c.name)).toContain("POWER_CAPPED");
      break;
    }
  });

  it("reports injected conditions in telemetry; a critical one fails Probe and prefills (ID-10)", async () => {
    device.setFaults({
      conditions: [
        { name: "THERMAL_THROTTLE", severity: "warning" },
        { name: "DEVICE_FAULT", severity: "critical", message: "laser bank 2 offline" },
      ],
    });
    try {
      for await (const snapshot of client.watchTelemetry({ intervalMs: 50 })) {
        expect(snapshot.conditions).toEqual([
          {
            name: "THERMAL_THROTTLE",
            severity: "warning",
            message: "injected by the mock's fault configuration",
          },
          { name: "DEVICE_FAULT", severity: "critical", message: "laser bank 2 offline" },
        ]);
        break;
      }
      const notServing = await expectOpalError(client.probe(), Code.UNAVAILABLE, "DEVICE_FAULT");
      expect(notServing.message).toContain("DEVICE_FAULT");
      await expectOpalError(
        collectPrefill(client.prefill(request())),
        Code.UNAVAILABLE,
        "DEVICE_FAULT",
      );
      device.setFaults({ conditions: [{ name: "SHUTTING_DOWN", severity: "critical" }] });
      await expectOpalError(client.probe(), Code.UNAVAILABLE, "SHUTTING_DOWN");
      device.setFaults({ conditions: [{ name: "THERMAL_THROTTLE", severity: "warning" }] });
      expect(await client.probe()).toBe("ready");
      expect((await collectPrefill(client.prefill(request()))).stats.promptTokens).toBe(32);
    } finally {
      device.setFaults({});
    }
  });

  it("rejects bad fault configurations clearly", () => {
    expect(() => device.setFaults({ errors: { Prefill: { rate: 2 } } })).toThrow(
      /rate must be in \[0, 1\]/,
    );
    expect(() =>
      device.setFaults({ errors: { Prefill: { rate: 1, code: "NOPE" as never } } }),
    ).toThrow(/unknown status code/);
    expect(() => device.setFaults({ conditions: [{ name: "hot", severity: "warning" }] })).toThrow(
      /conditions\[0\]\.name must be UPPER_SNAKE_CASE \(got "hot"\)/,
    );
    expect(() =>
      device.setFaults({ conditions: [{ name: "HOT", severity: "fatal" as never }] }),
    ).toThrow(/severity must be info, warning or critical \(got "fatal"\)/);
    device.setFaults({});
  });

  it("rejects fault fields that would never fire or cannot be drawn, naming expected and actual", async () => {
    const rejects = (faults: unknown, message: string) =>
      expect(() => device.setFaults(faults as FaultConfig), message).toThrow(message);
    rejects(
      { abortAfterChunk: 3 },
      "[invalid_argument] faults.abortAfterChunk is not a fault (expected one of seed, latencyMs, jitterMs, abortAfterChunks,",
    );
    rejects(
      { errors: { Prefil: { rate: 1 } } },
      "faults.errors.Prefil: unknown RPC (expected one of GetInfo, GetCapabilities, Probe, ListModels, LoadModel, UnloadModel, Prefill, FetchKv, ReleaseKv, WatchTelemetry)",
    );
    rejects(
      { errors: { Prefill: 0.5 } },
      "faults.errors.Prefill must be a mapping { rate, code, reason } (got 0.5)",
    );
    rejects(
      { errors: [1] },
      "faults.errors must be a mapping of RPC name to { rate, code, reason } (got [1])",
    );
    rejects(
      { errors: { Prefill: { rate: 1, reason: "busy" } } },
      'faults.errors.Prefill.reason must be UPPER_SNAKE_CASE (got "busy")',
    );
    rejects(
      { errors: { Prefill: { rate: 1, reason: "THERMAL_THROTTLE" } } },
      'faults.errors.Prefill.reason must be a protocol reason (docs/protocol/errors.md) (got "THERMAL_THROTTLE")',
    );
    rejects(
      { errors: { Prefill: { rate: 1, cod: 14 } } },
      "faults.errors.Prefill.cod is not a field (expected rate, code, reason)",
    );
    rejects({ abortRate: 2 }, "faults.abortRate must be in [0, 1] (got 2)");
    rejects({ corruptRate: -0.1 }, "faults.corruptRate must be in [0, 1] (got -0.1)");
    rejects({ dropRate: "half" }, 'faults.dropRate must be in [0, 1] (got "half")');
    rejects(
      { abortAfterChunks: "x" },
      'faults.abortAfterChunks must be a whole number >= 0 (got "x")',
    );
    rejects({ corruptChunk: 1.5 }, "faults.corruptChunk must be a whole number >= 0 (got 1.5)");
    rejects({ latencyMs: -5 }, "faults.latencyMs must be a number of ms >= 0 (got -5)");
    rejects({ stallMs: null }, "faults.stallMs must be a number of ms >= 0 (got null)");
    rejects({ powerCapWatts: 0 }, "faults.powerCapWatts must be a number > 0 (got 0)");
    rejects({ seed: "seven" }, 'faults.seed must be a whole number (got "seven")');
    rejects({ conditions: { name: "X" } }, 'faults.conditions must be a list (got {"name":"X"})');
    rejects(
      { conditions: [{ name: "X", severity: "info", detail: "" }] },
      "faults.conditions[0].detail is not a field (expected name, severity, message)",
    );
    // The faults in force stay after a rejected change.
    device.setFaults({ errors: { GetInfo: { rate: 1 } } });
    rejects({ latencyMs: -1 }, "latencyMs");
    try {
      await expectOpalError(client.getInfo(), Code.UNAVAILABLE, "DEVICE_FAULT");
    } finally {
      device.setFaults({});
    }
  });
});
