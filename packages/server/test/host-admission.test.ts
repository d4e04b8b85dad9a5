import { createDeviceClient } from "@opal/client";
import { Code, sleep } from "@opal/core";
import type { PrefillDriver, PrefillEvent } from "@opal/driver";
import { createMockDevice } from "@opal/mock";
import { collectPrefill, expectOpalError } from "@opal/testing";
import { describe, expect, it } from "vitest";
import { createDeviceServer } from "../src/index";
import { tinyRequest } from "./fixtures";

/**
 * A driver that leaves admission to the host (no `queuesPrefills`): one slot and one queue place
 * declared, and each prefill held after `accepted` until its call ends.
 */
function holdingDriver(): { driver: PrefillDriver; calls: () => number } {
  const mock = createMockDevice({
    models: ["opal-tiny"],
    limits: { maxConcurrentPrefills: 1, maxQueuedPrefills: 1 },
  });
  let calls = 0;
  const driver: PrefillDriver = {
    ...mock,
    queuesPrefills: false,
    async *prefill(request, options): AsyncGenerator<PrefillEvent> {
      calls++;
      for await (const event of mock.prefill(request, options)) {
        yield event;
        if (event.type === "accepted") await sleep(60_000, options?.signal);
      }
    },
  };
  return { driver, calls: () => calls };
}

/** Starts a prefill and resolves its first event (or failure) separately from the rest. */
function start(client: ReturnType<typeof createDeviceClient>, request = tinyRequest()) {
  const controller = new AbortController();
  const iterator = client.prefill(request, { signal: controller.signal })[Symbol.asyncIterator]();
  const first = iterator.next().then(
    (r) => r.value as PrefillEvent,
    (error: unknown) => error,
  );
  return { request, first, cancel: () => controller.abort() };
}

describe("the host admits prefills for a driver that does not (ID-7, PF-29..31, PF-6)", () => {
  it("queues beyond the slots, refuses beyond the queue with DEVICE_BUSY, and frees a slot on cancel", async () => {
    const { driver, calls } = holdingDriver();
    const server = await createDeviceServer(driver, { shutdownGraceMs: 0 });
    const client = createDeviceClient(server.address);
    try {
      const running = start(client);
      expect(((await running.first) as PrefillEvent).type).toBe("accepted");
      const queued = start(client);
      await sleep(200);
      expect(calls()).toBe(1); // the queued call has not reached the driver
      const refused = await expectOpalError(
        collectPrefill(client.prefill(tinyRequest())),
        Code.RESOURCE_EXHAUSTED,
        "DEVICE_BUSY",
      );
      expect(refused.retryDelayMs).toBeGreaterThan(0);
      running.cancel();
      const admitted = (await queued.first) as Extract<PrefillEvent, { type: "accepted" }>;
      expect(admitted.type).toBe("accepted");
      // The time it waited for the slot is reported (PF-11).
      expect(admitted.queueTimeUs).toBeGreaterThanOrEqual(150_000);
      queued.cancel();
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });

  it("answers the same request_id with another body REQUEST_ID_CONFLICT while the first runs", async () => {
    const { driver } = holdingDriver();
    const server = await createDeviceServer(driver, { shutdownGraceMs: 0 });
    const client = createDeviceClient(server.address);
    try {
      const running = start(client);
      expect(((await running.first) as PrefillEvent).type).toBe("accepted");
      await expectOpalError(
        collectPrefill(
          client.prefill({ ...running.request, promptTokenIds: Uint32Array.of(1, 2, 3) }),
        ),
        Code.ALREADY_EXISTS,
        "REQUEST_ID_CONFLICT",
      );
      running.cancel();
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });

  it("takes the same request_id with another priority as the same body (PF-7, not PF-6)", async () => {
    const { driver } = holdingDriver();
    const server = await createDeviceServer(driver, { shutdownGraceMs: 0 });
    const client = createDeviceClient(server.address);
    try {
      const running = start(client, tinyRequest({ priority: 5 }));
      expect(((await running.first) as PrefillEvent).type).toBe("accepted");
      // A router raising the priority of its retry supersedes the running call.
      const retry = start(client, { ...running.request, priority: -5 });
      expect(((await retry.first) as PrefillEvent).type).toBe("accepted");
      retry.cancel();
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });

  it("replays a retained request retried with another priority (PF-7)", async () => {
    const mock = createMockDevice({ models: ["opal-tiny"] });
    const server = await createDeviceServer(mock, { shutdownGraceMs: 0 });
    const client = createDeviceClient(server.address);
    try {
      const request = tinyRequest({ retentionSeconds: 60 });
      const first = await collectPrefill(client.prefill(request));
      const replay = await collectPrefill(client.prefill({ ...request, priority: -5 }));
      expect(replay.kvHandle).toBe(first.kvHandle);
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
      await mock.close();
    }
  });

  it("refuses uploads and FetchKv from the capabilities, before the driver", async () => {
    const { driver } = holdingDriver();
    const refusing: PrefillDriver = {
      ...driver,
      getCapabilities: async () => ({
        ...(await driver.getCapabilities()),
        maxModelBytes: 0,
        retention: { maxRetentionSeconds: 0, maxRetainedBytes: 0 },
      }),
      loadModel: () => Promise.reject(new Error("the driver was called")),
      fetchKv: () => {
        throw new Error("the driver was called");
      },
    };
    const server = await createDeviceServer(refusing, { shutdownGraceMs: 0 });
    const client = createDeviceClient(server.address);
    try {
      const upload = await expectOpalError(
        client.loadModel({
          modelId: "m",
          configJson: "{}",
          weightsByteLength: 1,
          weights: (async function* () {
            yield Uint8Array.of(0);
          })(),
        }),
        Code.UNIMPLEMENTED,
        "UNSUPPORTED_FEATURE",
      );
      expect(upload.fieldViolations[0]?.field).toBe("header.weights_byte_length");
      const fetch = await expectOpalError(
        collectPrefill(client.fetchKv({ kvHandle: "a-handle-of-some-length" }) as never),
        Code.UNIMPLEMENTED,
        "UNSUPPORTED_FEATURE",
      );
      expect(fetch.fieldViolations[0]?.field).toBe("kv_handle");
      expect(await client.releaseKv("a-handle-of-some-length")).toEqual({ released: false });
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });
});
