import { Code } from "@opal/core";
import type { PrefillRequest } from "@opal/driver";
import { createMockDevice, type MockDevice, serveMockDevice } from "@opal/mock";
import { expectOpalError } from "@opal/testing";
import { describe, expect, it } from "vitest";
import { createDevicePool, type RoutingPolicy } from "../src/create-device-pool";
import { startPrefill } from "../src/start-prefill";

let n = 0;
const request = (tokens: Uint32Array, patch: Partial<PrefillRequest> = {}): PrefillRequest => ({
  requestId: `pool-${++n}`,
  modelId: "opal-tiny",
  promptTokenIds: tokens,
  kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  ...patch,
});
const prompt = (prefix: number, length = 48) =>
  Uint32Array.from({ length }, (_, i) => (i < 32 ? (prefix * 7 + i) % 250 : (i * 13 + n) % 250));

function mocks(count: number) {
  const devices = new Map<string, MockDevice>();
  for (let i = 0; i < count; i++)
    devices.set(`mock-${i}:1`, createMockDevice({ models: ["opal-tiny"], deviceId: `mock-${i}` }));
  return { devices, connect: (target: string) => devices.get(target)! };
}

async function hitsWith(routing: RoutingPolicy): Promise<number> {
  const { devices, connect } = mocks(3);
  const pool = await createDevicePool([...devices.keys()], { routing, connect });
  let hits = 0;
  // 8 shared 32-token prefixes, each used by 6 requests with different tails.
  for (let round = 0; round < 6; round++) {
    for (let prefix = 0; prefix < 8; prefix++) {
      hits += (await startPrefill(pool, request(prompt(prefix))).result).stats.prefixCacheHitTokens;
    }
  }
  return hits;
}

describe("createDevicePool", () => {
  it("spreads prefills round-robin over devices in service", async () => {
    const { devices, connect } = mocks(3);
    const pool = await createDevicePool([...devices.keys()], { routing: "round-robin", connect });
    for (let i = 0; i < 9; i++) await startPrefill(pool, request(prompt(i))).result;
    expect(pool.devices.map((d) => d.prefills)).toEqual([3, 3, 3]);
  });

  it("raises prefix-cache hits with prefix-affinity routing over round-robin", async () => {
    const affinity = await hitsWith("prefix-affinity");
    const roundRobin = await hitsWith("round-robin");
    expect(affinity).toBeGreaterThan(roundRobin);
    // Every repeat of a prefix hits its 2 cached blocks under affinity: 8 prefixes x 5 repeats x 32.
    expect(affinity).toBe(8 * 5 * 32);
  });

  it("retries a failed prefill on another device with the same request_id", async () => {
    const { devices, connect } = mocks(2);
    devices.get("mock-0:1")!.setFaults({ abortAfterChunks: 1 });
    const pool = await createDevicePool([...devices.keys()], { routing: "round-robin", connect });
    const outcome = await startPrefill(pool, request(prompt(1)), { retry: { initialBackoffMs: 1 } })
      .result;
    expect(outcome.transfer.attempts).toBe(2);
    expect(pool.devices.map((d) => d.prefills)).toEqual([1, 1]);
  });

  it("takes a failing device out of service and probes it back in", async () => {
    const { devices, connect } = mocks(2);
    const bad = devices.get("mock-1:1")!;
    bad.setFaults({ errors: { Prefill: { rate: 1 } } });
    const pool = await createDevicePool([...devices.keys()], {
      routing: "round-robin",
      connect,
      failureThreshold: 2,
      openMs: 100,
    });
    for (let i = 0; i < 8; i++)
      await startPrefill(pool, request(prompt(i)), { retry: { initialBackoffMs: 1 } }).result;
    expect(pool.devices[1]!.circuit).toBe("open");
    expect(pool.devices[1]!.prefills).toBe(2);
    bad.setFaults({});
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(await pool.probe()).toBe("ready");
    expect(pool.devices[1]!.circuit).toBe("closed");
  });

  it("reports DEVICE_BUSY when every device is at its in-flight limit", async () => {
    const { devices, connect } = mocks(1);
    devices.get("mock-0:1")!.setFaults({ stallAfterChunks: 1, stallMs: 10_000 });
    const pool = await createDevicePool([...devices.keys()], { connect, maxInFlightPerDevice: 1 });
    const controller = new AbortController();
    const held = startPrefill(pool, request(prompt(1)), { signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 30));
    await expectOpalError(
      startPrefill(pool, request(prompt(2)), { retry: { maxAttempts: 1 } }).result,
      Code.RESOURCE_EXHAUSTED,
      "DEVICE_BUSY",
    );
    controller.abort();
    await expectOpalError(held.result, Code.CANCELLED);
  });

  it("routes fetch and release by handle, over gRPC, with a dns:/// target", async () => {
    const served = await serveMockDevice({ models: ["opal-tiny"] });
    const port = served.address.split(":")[1];
    const pool = await createDevicePool([`dns:///localhost:${port}`], { routing: "least-loaded" });
    try {
      expect(pool.devices.length).toBeGreaterThanOrEqual(1);
      const outcome = await startPrefill(pool, request(prompt(3), { retentionSeconds: 30 })).result;
      expect(outcome.kvHandle).toContain("|");
      let chunks = 0;
      for await (const event of pool.fetchKv({ kvHandle: outcome.kvHandle }))
        if (event.type === "chunk") chunks++;
      expect(chunks).toBeGreaterThan(0);
      expect(await pool.releaseKv(outcome.kvHandle)).toEqual({ released: true });
      expect(await pool.releaseKv("nonsense")).toEqual({ released: false });
    } finally {
      await pool.close();
      await served.close({ graceMs: 100 });
    }
  });
});
