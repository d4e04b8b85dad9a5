import { lookup } from "node:dns/promises";
import { Code } from "@opal/core";
import type { PrefillDriver, PrefillRequest } from "@opal/driver";
import { createMockDevice, type MockDevice, type MockServer, serveMockDevice } from "@opal/mock";
import { expectOpalError } from "@opal/testing";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createDeviceClient } from "../src/device-client/create-device-client";
import { createDevicePool } from "../src/pool/create-device-pool";
import type { DevicePool, DevicePoolOptions, RoutingPolicy } from "../src/pool/device-pool-options";

/** When set, `lookup` of node:dns/promises answers with it (the pool's and this file's). */
const fakeLookup = vi.hoisted(() => ({
  addresses: undefined as undefined | { address: string; family: number }[],
  /** Answer delay of the fake, in ms; lookups running now and the most at once. */
  delayMs: 0,
  running: 0,
  mostAtOnce: 0,
}));
vi.mock("node:dns/promises", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:dns/promises")>();
  return {
    ...real,
    lookup: (async (...args: Parameters<typeof real.lookup>) => {
      if (!fakeLookup.addresses) return real.lookup(...args);
      const answer = fakeLookup.addresses;
      fakeLookup.running++;
      fakeLookup.mostAtOnce = Math.max(fakeLookup.mostAtOnce, fakeLookup.running);
      try {
        if (fakeLookup.delayMs) await new Promise((r) => setTimeout(r, fakeLookup.delayMs));
        return answer;
      } finally {
        fakeLookup.running--;
      }
    }) as typeof real.lookup,
  };
});

import { startPrefill } from "../src/prefill/start-prefill";

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

interface Seen {
  readonly target: string;
  readonly requestId: string;
}

/** Request ids whose first prefill attempt fails (the device that gets it aborts after 1 chunk). */
const failFirstAttempt = new Set<string>();
const pools: DevicePool[] = [];
const servers: MockServer[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  failFirstAttempt.clear();
  Object.assign(fakeLookup, { addresses: undefined, delayMs: 0, running: 0, mostAtOnce: 0 });
  await Promise.all(pools.splice(0).map((p) => p.close()));
  await Promise.all(servers.splice(0).map((s) => s.close({ graceMs: 100 })));
});

/**
 * A pool over `count` mocks (in process, or served on 127.0.0.1:0 and reached with real device
 * clients) whose drivers record, per prefill call, the target and the request id it carried.
 */
async function recordingPool(
  count: number,
  options: DevicePoolOptions,
  transport: "in-process" | "grpc" = "in-process",
) {
  const byTarget = new Map<string, MockDevice>();
  const mocks: MockDevice[] = [];
  const clients = new Map<string, PrefillDriver>();
  for (let i = 0; i < count; i++) {
    if (transport === "grpc") {
      const served = await serveMockDevice({ models: ["opal-tiny"], deviceId: `mock-${i}` });
      servers.push(served);
      byTarget.set(served.address, served.device);
      clients.set(served.address, createDeviceClient(served.address));
      mocks.push(served.device);
    } else {
      const mock = createMockDevice({ models: ["opal-tiny"], deviceId: `mock-${i}` });
      byTarget.set(`mock-${i}:1`, mock);
      clients.set(`mock-${i}:1`, mock);
      mocks.push(mock);
    }
  }
  const seen: Seen[] = [];
  const connect = (target: string): PrefillDriver => {
    const driver = clients.get(target)!;
    return {
      ...driver,
      prefill(req, call) {
        seen.push({ target, requestId: req.requestId });
        if (failFirstAttempt.delete(req.requestId))
          byTarget.get(target)!.setFaults({ abortAfterChunks: 1 });
        return driver.prefill(req, call);
      },
      close: () => driver.close(),
    };
  };
  const pool = await createDevicePool([...byTarget.keys()], { ...options, connect });
  pools.push(pool);
  return { pool, seen, byTarget, mocks };
}

/**
 * Starts `count` prefills that stall after their first chunk and waits until they are in flight;
 * later prefills do not stall. `release()` cancels them.
 */
async function holdStalledPrefills(pool: DevicePool, mocks: readonly MockDevice[], count: number) {
  for (const mock of mocks) mock.setFaults({ stallAfterChunks: 1, stallMs: 60_000 });
  const controller = new AbortController();
  const runs = Array.from(
    { length: count },
    (_, i) => startPrefill(pool, request(prompt(100 + i)), { signal: controller.signal }).result,
  );
  await vi.waitFor(() =>
    expect(mocks.reduce((sum, m) => sum + m.stats.activePrefills, 0)).toBe(count),
  );
  for (const mock of mocks) mock.setFaults({});
  const targets = pool.devices.filter((d) => d.inFlight === 1).map((d) => d.target);
  expect(targets).toHaveLength(count);
  return {
    targets,
    async release() {
      controller.abort();
      for (const run of runs) await expectOpalError(run, Code.CANCELLED);
    },
  };
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
    // Three mocks served over gRPC, reached through real clients that record what each device saw.
    const { pool, seen, byTarget } = await recordingPool(3, { routing: "round-robin" }, "grpc");
    const req = request(prompt(1));
    failFirstAttempt.add(req.requestId);
    const outcome = await startPrefill(pool, req, { retry: { initialBackoffMs: 1 } }).result;
    expect(outcome.transfer.attempts).toBe(2);
    expect(seen).toHaveLength(2);
    const [first, retry] = seen as [Seen, Seen];
    expect(retry.target).not.toBe(first.target);
    expect([first.requestId, retry.requestId]).toEqual([req.requestId, req.requestId]);
    // The device that got the first attempt is the one that failed; the retry's device delivered.
    expect(byTarget.get(first.target)!.stats.faultsInjected).toBe(1);
    expect(byTarget.get(retry.target)!.stats.faultsInjected).toBe(0);
    expect(byTarget.get(retry.target)!.stats.prefillsCompleted).toBe(1);
    expect(outcome.kvHandle.startsWith(`${encodeURIComponent(retry.target)}|`)).toBe(true);
    // The result names the device that served it, as the pool resolves its handle.
    expect(outcome.servedBy).toBe(retry.target);
    expect(pool.targetOf(outcome.kvHandle)).toBe(retry.target);
    expect(pool.targetOf("elsewhere|handle")).toBeUndefined();
    const counts = Object.fromEntries(
      pool.devices.map((d) => [d.target, [d.prefills, d.failures]]),
    );
    expect(counts[first.target]).toEqual([1, 1]);
    expect(counts[retry.target]).toEqual([1, 0]);
    expect(pool.devices.map((d) => d.prefills).sort()).toEqual([0, 1, 1]);
  });

  it("retries on another device even when the failed one is the least loaded", async () => {
    const { pool, seen, byTarget, mocks } = await recordingPool(3, { routing: "least-loaded" });
    // Two devices hold a stalled prefill each; the third is idle and gets the first attempt.
    const held = await holdStalledPrefills(pool, mocks, 2);
    const idle = pool.devices.find((d) => d.inFlight === 0)!.target;
    const req = request(prompt(2));
    failFirstAttempt.add(req.requestId);
    const outcome = await startPrefill(pool, req, { retry: { initialBackoffMs: 1 } }).result;
    const attempts = seen.filter((s) => s.requestId === req.requestId);
    expect(attempts.map((s) => s.target)[0]).toBe(idle);
    expect(attempts).toHaveLength(2);
    expect(attempts[1]!.target).not.toBe(idle);
    expect(held.targets).toContain(attempts[1]!.target);
    expect(outcome.transfer.attempts).toBe(2);
    expect(byTarget.get(idle)!.stats.faultsInjected).toBe(1);
    await held.release();
  });

  it("routes least-loaded prefills away from a device holding a stalled prefill", async () => {
    const { pool, seen, mocks } = await recordingPool(3, { routing: "least-loaded" });
    const held = await holdStalledPrefills(pool, mocks, 1);
    const [stalled] = held.targets as [string];
    seen.length = 0;
    for (let i = 0; i < 6; i++) await startPrefill(pool, request(prompt(10 + i))).result;
    expect(seen).toHaveLength(6);
    expect(seen.filter((s) => s.target === stalled)).toEqual([]);
    const others = pool.devices.filter((d) => d.target !== stalled);
    expect(others.map((d) => d.prefills)).toEqual([3, 3]);
    const stalledDevice = pool.devices.find((d) => d.target === stalled)!;
    expect([stalledDevice.prefills, stalledDevice.inFlight]).toEqual([1, 1]);
    await held.release();
    expect(pool.devices.map((d) => d.inFlight)).toEqual([0, 0, 0]);
  });

  it("takes a failing device out of service and probes it back in", async () => {
    const { devices, connect } = mocks(2);
    const bad = devices.get("mock-1:1")!;
    bad.setFaults({ errors: { Prefill: { rate: 1 } } });
    // The pool's clock stands still until moved: a slow machine cannot let openMs pass mid-loop.
    let clock = Date.now();
    vi.spyOn(Date, "now").mockImplementation(() => clock);
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
    clock += 120;
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
  it("expands a dns:/// target to exactly the addresses the name resolves to", async () => {
    const served = await serveMockDevice({ models: ["opal-tiny"] });
    const port = served.address.split(":")[1];
    const resolved = await lookup("localhost", { all: true });
    const expected = resolved.map((a) =>
      a.family === 6 ? `[${a.address}]:${port}` : `${a.address}:${port}`,
    );
    expect(expected.length).toBeGreaterThanOrEqual(1);
    const connected: string[] = [];
    const pool = await createDevicePool([`dns:///localhost:${port}`, "mock-x:1"], {
      routing: "round-robin",
      connect: (target) => {
        connected.push(target);
        return target === "mock-x:1"
          ? createMockDevice({ models: ["opal-tiny"] })
          : createDeviceClient(target);
      },
    });
    try {
      expect(pool.devices.map((d) => d.target)).toEqual([...expected, "mock-x:1"]);
      expect(connected).toEqual([...expected, "mock-x:1"]);
      expect(pool.devices.map((d) => d.circuit)).toEqual([...expected, "x"].map(() => "closed"));
    } finally {
      await pool.close();
      await served.close({ graceMs: 100 });
    }
  });

  it("expands a dns:/// target to one device per resolved address, IPv6 in brackets", async () => {
    fakeLookup.addresses = [
      { address: "10.1.2.3", family: 4 },
      { address: "fd00::7", family: 6 },
      { address: "10.1.2.4", family: 4 },
    ];
    const connected: string[] = [];
    const pool = await createDevicePool(["dns:///devices.internal:50051"], {
      connect: (target) => {
        connected.push(target);
        return createMockDevice({ models: ["opal-tiny"] });
      },
    });
    pools.push(pool);
    const expected = ["10.1.2.3:50051", "[fd00::7]:50051", "10.1.2.4:50051"];
    expect(pool.devices.map((d) => d.target)).toEqual(expected);
    expect(connected).toEqual(expected);
  });

  it("resolves dns:/// targets again: new addresses join, vanished ones leave once idle", async () => {
    fakeLookup.addresses = [
      { address: "10.0.0.1", family: 4 },
      { address: "10.0.0.2", family: 4 },
    ];
    const closed: string[] = [];
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const connect = (target: string): PrefillDriver => {
      const mock = createMockDevice({ models: ["opal-tiny"] });
      return {
        ...mock,
        async *prefill(req, options) {
          // The first prefill on 10.0.0.1 is held open until the test releases it.
          if (target === "10.0.0.1:50051" && req.requestId === "held") await held;
          yield* mock.prefill(req, options);
        },
        async close() {
          closed.push(target);
          await mock.close();
        },
      };
    };
    const pool = await createDevicePool(["dns:///devices.internal:50051", "static:1"], {
      routing: "round-robin",
      connect,
      dnsRefreshMs: 20,
      health: false,
    });
    pools.push(pool);
    expect(pool.devices.map((d) => d.target)).toEqual([
      "10.0.0.1:50051",
      "10.0.0.2:50051",
      "static:1",
    ]);
    const running = startPrefill(pool, request(prompt(1), { requestId: "held" })).result;
    await vi.waitFor(() => expect(pool.devices[0]!.inFlight).toBe(1));

    fakeLookup.addresses = [
      { address: "10.0.0.2", family: 4 },
      { address: "10.0.0.3", family: 4 },
    ];
    await vi.waitFor(() =>
      expect(pool.devices.map((d) => d.target)).toEqual([
        "10.0.0.1:50051",
        "10.0.0.2:50051",
        "static:1",
        "10.0.0.3:50051",
      ]),
    );
    // 10.0.0.1 is out of DNS: no new prefill goes there while its running one finishes.
    for (let i = 0; i < 3; i++) await startPrefill(pool, request(prompt(2 + i))).result;
    expect(pool.devices.map((d) => d.prefills)).toEqual([1, 1, 1, 1]);
    expect(closed).toEqual([]);

    release();
    await running;
    expect(pool.devices.map((d) => d.target)).toEqual([
      "10.0.0.2:50051",
      "static:1",
      "10.0.0.3:50051",
    ]);
    expect(closed).toEqual(["10.0.0.1:50051"]);

    // A lookup with no address changes nothing.
    fakeLookup.addresses = [];
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(pool.devices).toHaveLength(3);
  });

  it("keeps a device DNS dropped reachable by handle while its lease runs, then closes it", async () => {
    fakeLookup.addresses = [{ address: "10.0.1.1", family: 4 }];
    const closed: string[] = [];
    const connect = (target: string): PrefillDriver => {
      const mock = createMockDevice({ models: ["opal-tiny"] });
      return {
        ...mock,
        async close() {
          closed.push(target);
          await mock.close();
        },
      };
    };
    const pool = await createDevicePool(["dns:///kv.internal:50051"], {
      connect,
      dnsRefreshMs: 20,
      health: false,
    });
    pools.push(pool);
    const outcome = await startPrefill(pool, request(prompt(7), { retentionSeconds: 1 })).result;
    fakeLookup.addresses = [{ address: "10.0.1.2", family: 4 }];
    await vi.waitFor(() => expect(pool.devices).toHaveLength(2));
    // Out of DNS but within its lease: the handle still reaches it, and it gets no new prefill.
    let bytes = 0;
    for await (const event of pool.fetchKv({ kvHandle: outcome.kvHandle }))
      if (event.type === "chunk") bytes += event.chunk.data.byteLength;
    expect(bytes).toBe(outcome.stats.kvTotalBytes);
    await startPrefill(pool, request(prompt(8))).result;
    expect(pool.devices.map((d) => [d.target, d.prefills])).toEqual([
      ["10.0.1.1:50051", 1],
      ["10.0.1.2:50051", 1],
    ]);
    expect(closed).toEqual([]);
    // Once the lease has ended, the next refresh closes it.
    await vi.waitFor(() => expect(closed).toEqual(["10.0.1.1:50051"]), { timeout: 3_000 });
    expect(pool.devices.map((d) => d.target)).toEqual(["10.0.1.2:50051"]);
  });

  it("runs one DNS refresh at a time and survives a connect that throws during one", async () => {
    fakeLookup.addresses = [{ address: "10.0.2.1", family: 4 }];
    fakeLookup.delayMs = 60;
    const connect = (target: string): PrefillDriver => {
      if (target === "10.0.2.9:50051") throw new Error("cannot connect to 10.0.2.9");
      return createMockDevice({ models: ["opal-tiny"] });
    };
    const pool = await createDevicePool(["dns:///slow.internal:50051"], {
      connect,
      dnsRefreshMs: 10,
      health: false,
    });
    pools.push(pool);
    fakeLookup.addresses = [
      { address: "10.0.2.1", family: 4 },
      { address: "10.0.2.9", family: 4 },
    ];
    await new Promise((r) => setTimeout(r, 250));
    expect(fakeLookup.mostAtOnce).toBe(1);
    expect(pool.devices.map((d) => d.target)).toEqual(["10.0.2.1:50051"]);
  });

  it("closes the devices it made when creating the pool fails", async () => {
    const closed: string[] = [];
    const watched: string[] = [];
    const connect = (target: string): PrefillDriver => {
      if (target === "bad:1") throw new Error("cannot parse bad:1");
      const mock = createMockDevice({ models: ["opal-tiny"] });
      return {
        ...mock,
        watchTelemetry(req, call) {
          watched.push(target);
          return mock.watchTelemetry(req, call);
        },
        async close() {
          closed.push(target);
          await mock.close();
        },
      };
    };
    await expect(createDevicePool(["good:1", "bad:1"], { connect })).rejects.toThrow(
      "cannot parse bad:1",
    );
    expect(closed).toEqual(["good:1"]);
    expect(watched).toEqual(["good:1"]);
  });
});
