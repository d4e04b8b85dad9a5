import { createDeviceClient } from "@opal/client";
import { Code } from "@opal/core";
import type { PrefillDriver, PrefillEvent, PrefillRequest } from "@opal/driver";
import { createMockDevice, type MockDevice } from "@opal/mock";
import { collectPrefill, expectOpalError } from "@opal/testing";
import { describe, expect, it } from "vitest";
import { createDeviceServer, DEFAULT_TRANSPORT } from "../src/index";
import { readEvents, tinyRequest } from "./fixtures";

/** grpc-js buffers this many messages in a Writable (server) and in a Readable (client). */
const GRPC_JS_STREAM_HIGH_WATER_MARK = 16;

/** The mock device behind a driver that counts the prefill events the server pulled from it. */
function countingDriver(device: MockDevice): { driver: PrefillDriver; pulled(): number } {
  let pulled = 0;
  const driver = new Proxy(device, {
    get(target, key, receiver) {
      if (key !== "prefill") return Reflect.get(target, key, receiver);
      return async function* (...args: Parameters<PrefillDriver["prefill"]>) {
        for await (const event of target.prefill(...args)) {
          pulled++;
          yield event;
        }
      };
    },
  }) as PrefillDriver;
  return { driver, pulled: () => pulled };
}

/** The events already read, then the rest of the iterator: the whole stream again. */
async function* replay<T>(seen: readonly T[], rest: AsyncIterator<T>): AsyncGenerator<T> {
  yield* seen;
  for (;;) {
    const next = await rest.next();
    if (next.done) return;
    yield next.value;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** llama-3-8b shape, 512 tokens, bf16: 32 layers x K,V x 1 MiB = 64 MiB of KV. */
const CHUNK_BYTES = 128 * 1024;
const bigRequest = (): PrefillRequest =>
  tinyRequest({
    modelId: "llama-3-8b",
    promptTokenIds: Uint32Array.from({ length: 512 }, (_, i) => (i * 7919 + 11) % 128_000),
    kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
    maxChunkBytes: CHUNK_BYTES,
  });
const BIG_KV_BYTES = 64 * 1024 * 1024;
const BIG_EVENTS = BIG_KV_BYTES / CHUNK_BYTES + 2; // accepted + chunks + completed

describe("back-pressure (TR-3)", () => {
  it("stops pulling from the driver while the client does not read, then streams the rest intact", async () => {
    const device = createMockDevice({ models: ["llama-3-8b"] });
    const counting = countingDriver(device);
    const server = await createDeviceServer(counting.driver);
    const client = createDeviceClient(server.address);
    try {
      const read = 3;
      const held = await readEvents(client.prefill(bigRequest()), read);
      // Wait until the server is blocked on the paused reader: the count stops growing.
      let last = -1;
      await expect
        .poll(
          async () => {
            const before = counting.pulled();
            await sleep(100);
            const settled = before === counting.pulled() && before === last;
            last = before;
            return settled;
          },
          { timeout: 10_000, interval: 0 },
        )
        .toBe(true);
      const paused = counting.pulled();
      await sleep(1_000);
      expect(counting.pulled()).toBe(paused);
      // What may be in flight: the HTTP/2 window's worth of chunks, grpc-js's write buffer on the
      // server and read buffer on the client, and TR-3's allowance of 2 chunks beyond the window.
      const windowChunks = Math.ceil(DEFAULT_TRANSPORT.flowControlWindowBytes / CHUNK_BYTES);
      const bound = read + windowChunks + 2 * GRPC_JS_STREAM_HIGH_WATER_MARK + 2;
      expect(paused).toBeLessThanOrEqual(bound);
      expect(bound).toBeLessThan(BIG_EVENTS / 2);
      expect(device.stats.activePrefills).toBe(1);

      // Resume: the rest arrives, in order, with a matching digest.
      const prefill = await collectPrefill(replay(held.seen, held.iterator));
      expect(prefill.stats.kvTotalBytes).toBe(BIG_KV_BYTES);
      expect(prefill.events).toHaveLength(BIG_EVENTS);
      expect(counting.pulled()).toBe(BIG_EVENTS);
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });

  it("releases the device slot when a client cancels while the server waits for it to drain", async () => {
    const device = createMockDevice({ models: ["llama-3-8b"] });
    const counting = countingDriver(device);
    const server = await createDeviceServer(counting.driver);
    const client = createDeviceClient(server.address);
    try {
      const held = await readEvents(client.prefill(bigRequest()), 3);
      await expect.poll(() => counting.pulled()).toBeGreaterThan(100);
      expect(device.stats.activePrefills).toBe(1);
      await held.iterator.return?.();
      await expect.poll(() => device.stats.activePrefills).toBe(0);
      expect(counting.pulled()).toBeLessThan(BIG_EVENTS);
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });

  it("releases the device slot when a client cancels a stalled prefill", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    const server = await createDeviceServer(device);
    const client = createDeviceClient(server.address);
    try {
      device.setFaults({ stallAfterChunks: 1, stallMs: 30_000 });
      const controller = new AbortController();
      const events: PrefillEvent[] = [];
      const running = (async () => {
        for await (const event of client.prefill(tinyRequest(), { signal: controller.signal }))
          events.push(event);
      })();
      await expect.poll(() => events.length).toBe(2);
      expect(device.stats.activePrefills).toBe(1);
      controller.abort();
      await expectOpalError(running, Code.CANCELLED);
      await expect.poll(() => device.stats.activePrefills).toBe(0);
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });
});

describe("cancellation during authentication", () => {
  it("frees the device and the tenant's slot when the caller cancels while it is authenticated", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    // An authenticator that holds calls while `held` is set (a slow identity provider).
    let held: { entered: () => void; release: Promise<void> } | undefined;
    const server = await createDeviceServer(device, {
      auth: {
        async authenticate() {
          if (held) {
            held.entered();
            await held.release;
          }
          return "tenant-a";
        },
      },
      limits: { maxConcurrentPrefillsPerTenant: 1 },
    });
    const client = createDeviceClient(server.address, { token: "t", dataPlane: "inline" });
    try {
      await client.getCapabilities();
      device.setFaults({ stallAfterChunks: 1, stallMs: 30_000 });
      let release!: () => void;
      const entered = new Promise<void>((resolve) => {
        held = { entered: resolve, release: new Promise<void>((r) => (release = r)) };
      });
      const controller = new AbortController();
      const cancelled = collectPrefill(
        client.prefill(tinyRequest(), { signal: controller.signal }),
      );
      await entered;
      controller.abort();
      await expectOpalError(cancelled, Code.CANCELLED);
      // Let the server see the cancellation before authentication resolves.
      await sleep(100);
      held = undefined;
      release();
      // The call ended: it never holds the device or the tenant's only slot.
      await sleep(200);
      expect(device.stats.activePrefills).toBe(0);
      device.setFaults({});
      expect((await collectPrefill(client.prefill(tinyRequest()))).stats.promptTokens).toBe(32);
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });
});

describe("deadlines", () => {
  it("ends a stalled prefill with DEADLINE_EXCEEDED at the caller's deadline and frees the device", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    const server = await createDeviceServer(device, { metricsPort: 0 });
    const client = createDeviceClient(server.address);
    try {
      device.setFaults({ stallAfterChunks: 1, stallMs: 30_000 });
      const startedMs = performance.now();
      await expectOpalError(
        collectPrefill(client.prefill(tinyRequest(), { timeoutMs: 200 })),
        Code.DEADLINE_EXCEEDED,
      );
      const elapsedMs = performance.now() - startedMs;
      expect(elapsedMs).toBeGreaterThanOrEqual(190);
      expect(elapsedMs).toBeLessThan(2_000);
      await expect.poll(() => device.stats.activePrefills).toBe(0);
      // The server ends the call at the deadline (it travels as `grpc-timeout`); on a loaded machine
      // the client's own cancel at the same instant may reach it first, so either ending counts.
      await expect
        .poll(async () => (await (await fetch(server.metricsUrl!)).text()).split("\n"))
        .toSatisfy((lines: string[]) =>
          lines.some((l) => /^opal_requests_total\{method="Prefill",code="(4|1)"\} 1$/.test(l)),
        );
      // The device is usable again.
      device.setFaults({});
      await collectPrefill(client.prefill(tinyRequest(), { timeoutMs: 5_000 }));
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });
});
