import { Code, OpalError, sleep } from "@opal/core";
import type { PrefillDriver, PrefillRequest, TelemetrySnapshot } from "@opal/driver";
import { createMockDevice, type MockDevice, serveMockDevice } from "@opal/mock";
import { describe, expect, it, vi } from "vitest";
import { createDevicePool } from "../src/pool/create-device-pool";
import type { DevicePoolOptions } from "../src/pool/device-pool-options";
import { startPrefill } from "../src/prefill/start-prefill";

let n = 0;
const request = (): PrefillRequest => ({
  requestId: `health-${++n}`,
  modelId: "opal-tiny",
  promptTokenIds: Uint32Array.from({ length: 24 }, (_, i) => (i * 13 + n) % 250),
  kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
});

/** A mock device whose telemetry reports `report` (mutable) instead of its own figures. */
function reporting(id: string) {
  const mock = createMockDevice({ models: ["opal-tiny"], deviceId: id });
  const report = { load: 0, critical: [] as string[] };
  const driver: PrefillDriver & { mock: MockDevice } = {
    ...mock,
    mock,
    async *watchTelemetry(request, call) {
      for await (const real of mock.watchTelemetry(request, call)) {
        const snapshot: TelemetrySnapshot = {
          ...real,
          queueDepth: report.load,
          activePrefills: 0,
          conditions: report.critical.map((name) => ({
            name,
            severity: "critical",
            message: "injected by the test",
          })),
        };
        yield snapshot;
      }
    },
  };
  return { driver, report };
}

const HEALTH = { intervalMs: 50 };

/**
 * A pool over two reporting devices `a` and `b` (health every 50 ms); `wrapA` may give the pool
 * another driver for `a`, built on it, before the pool starts.
 */
async function twoDevicePool(
  options: Omit<DevicePoolOptions, "connect" | "health">,
  wrapA: (a: ReturnType<typeof reporting>) => PrefillDriver = (a) => a.driver,
) {
  const a = reporting("a");
  const b = reporting("b");
  const drivers: Record<string, PrefillDriver> = { "a:1": wrapA(a), "b:1": b.driver };
  const pool = await createDevicePool(["a:1", "b:1"], {
    ...options,
    connect: (target) => drivers[target]!,
    health: HEALTH,
  });
  return { a, b, pool };
}

describe("device pool health", () => {
  it("takes a device with a critical condition out until its telemetry clears it", async () => {
    const { a, pool } = await twoDevicePool({ routing: "round-robin" });
    a.report.critical = ["OVER_TEMPERATURE"];
    try {
      await vi.waitFor(() => expect(pool.devices[0]!.critical).toEqual(["OVER_TEMPERATURE"]));
      for (let i = 0; i < 4; i++) await startPrefill(pool, request()).result;
      expect(pool.devices.map((d) => d.prefills)).toEqual([0, 4]);

      a.report.critical = [];
      await vi.waitFor(() => expect(pool.devices[0]!.critical).toEqual([]));
      for (let i = 0; i < 4; i++) await startPrefill(pool, request()).result;
      expect(pool.devices.map((d) => d.prefills)).toEqual([2, 6]);
    } finally {
      await pool.close();
    }
  });

  it("routes least-loaded by the load devices report for all their clients", async () => {
    const { a, pool } = await twoDevicePool({ routing: "least-loaded" });
    a.report.load = 5; // another router's work, invisible to this pool's own in-flight count
    try {
      await vi.waitFor(() => expect(pool.devices.map((d) => d.reportedLoad)).toEqual([5, 0]));
      for (let i = 0; i < 4; i++) await startPrefill(pool, request()).result;
      expect(pool.devices.map((d) => d.prefills)).toEqual([0, 4]);
    } finally {
      await pool.close();
    }
  });

  it("probes a device taken out by failures back in, without spending a prefill on it", async () => {
    const { a, pool } = await twoDevicePool({
      routing: "round-robin",
      failureThreshold: 1,
      openMs: 100,
    });
    try {
      a.driver.mock.setFaults({ abortAfterChunks: 1 });
      await startPrefill(pool, request(), { retry: { initialBackoffMs: 1 } }).result;
      expect(pool.devices[0]!.circuit).toBe("open");
      a.driver.mock.setFaults({});
      const started = a.driver.mock.stats.prefillsStarted;
      await vi.waitFor(() => expect(pool.devices[0]!.circuit).toBe("closed"), { timeout: 2_000 });
      expect(a.driver.mock.stats.prefillsStarted).toBe(started);
    } finally {
      await pool.close();
    }
  });

  it("keeps a device out while its probe fails", async () => {
    let probes = 0;
    const { a, pool } = await twoDevicePool(
      { routing: "round-robin", failureThreshold: 1, openMs: 100 },
      ({ driver }) => ({
        ...driver,
        async probe() {
          probes++;
          throw new OpalError(Code.UNAVAILABLE, "still down");
        },
      }),
    );
    try {
      a.driver.mock.setFaults({ abortAfterChunks: 1 });
      await startPrefill(pool, request(), { retry: { initialBackoffMs: 1 } }).result;
      await vi.waitFor(() => expect(probes).toBeGreaterThanOrEqual(2), { timeout: 2_000 });
      expect(pool.devices[0]!.circuit).toBe("open");
    } finally {
      await pool.close();
    }
  });

  it("over gRPC: a mock reporting DEVICE_FAULT is skipped, and used again once it clears", async () => {
    const sick = await serveMockDevice({ models: ["opal-tiny"] });
    const well = await serveMockDevice({ models: ["opal-tiny"] });
    const pool = await createDevicePool([sick.address, well.address], {
      routing: "round-robin",
      health: HEALTH,
    });
    try {
      sick.device.setFaults({ conditions: [{ name: "DEVICE_FAULT", severity: "critical" }] });
      await vi.waitFor(() => expect(pool.devices[0]!.critical).toEqual(["DEVICE_FAULT"]));
      for (let i = 0; i < 3; i++) await startPrefill(pool, request()).result;
      expect(pool.devices.map((d) => d.prefills)).toEqual([0, 3]);
      expect(sick.device.stats.prefillsStarted).toBe(0);

      sick.device.setFaults({});
      await vi.waitFor(() => expect(pool.devices[0]!.critical).toEqual([]));
      for (let i = 0; i < 2; i++) await startPrefill(pool, request()).result;
      expect(sick.device.stats.prefillsStarted).toBe(1);
    } finally {
      await pool.close();
      await sick.close();
      await well.close();
    }
  });

  it("keeps a critical device out when its telemetry then fails, until a ready Probe", async () => {
    let watches = 0;
    const { pool } = await twoDevicePool({ routing: "round-robin" }, ({ driver, report }) => {
      report.critical = ["SHUTTING_DOWN"];
      return {
        ...driver,
        async *watchTelemetry(request, call) {
          watches++;
          // One SHUTTING_DOWN snapshot, then the stream ends (TM-4) and never comes back.
          if (watches > 1)
            throw new OpalError(Code.UNAVAILABLE, "gone", { reason: "SHUTTING_DOWN" });
          for await (const snapshot of driver.watchTelemetry(request, call)) {
            yield snapshot;
            throw new OpalError(Code.UNAVAILABLE, "shutting down", { reason: "SHUTTING_DOWN" });
          }
        },
      };
    });
    try {
      await vi.waitFor(() => expect(watches).toBeGreaterThanOrEqual(3));
      expect(pool.devices[0]!.critical).toEqual(["SHUTTING_DOWN"]);
      for (let i = 0; i < 2; i++) await startPrefill(pool, request()).result;
      expect(pool.devices.map((d) => d.prefills)).toEqual([0, 2]);
      // The device answers Probe ready again: it is back.
      expect(await pool.probe()).toBe("ready");
      expect(pool.devices[0]!.critical).toEqual([]);
    } finally {
      await pool.close();
    }
  });

  it.each([
    ["has no telemetry", Code.UNIMPLEMENTED],
    ["refuses telemetry to this caller (TM-5)", Code.PERMISSION_DENIED],
  ])(
    "works with a device that %s, asking it once, and stops watching when closed",
    async (_, code) => {
      const mock = createMockDevice({ models: ["opal-tiny"] });
      let watches = 0;
      const silent: PrefillDriver = {
        ...mock,
        // biome-ignore lint/correctness/useYield: the device refuses before yielding
        async *watchTelemetry() {
          watches++;
          throw new OpalError(code, "no telemetry for you");
        },
      };
      const pool = await createDevicePool(["s:1"], { connect: () => silent, health: HEALTH });
      await startPrefill(pool, request()).result;
      await sleep(200);
      expect(watches).toBe(1);
      expect(pool.devices[0]!.reportedLoad).toBeUndefined();
      await pool.close();
    },
  );

  it("opens no telemetry stream with health: false", async () => {
    const mock = createMockDevice({ models: ["opal-tiny"] });
    const watch = vi.fn(mock.watchTelemetry);
    const pool = await createDevicePool(["m:1"], {
      connect: () => ({ ...mock, watchTelemetry: watch }),
      health: false,
    });
    await startPrefill(pool, request()).result;
    expect(watch).not.toHaveBeenCalled();
    await pool.close();
  });
});
