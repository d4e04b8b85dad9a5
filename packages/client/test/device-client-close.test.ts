import { readdirSync } from "node:fs";
import { Code, OpalError, Reason } from "@opal/core";
import type { PrefillRequest } from "@opal/driver";
import { type MockServer, serveMockDevice } from "@opal/mock";
import { expectOpalError } from "@opal/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeviceClientOptions } from "../src/device-client/client-options";
import { createDeviceClient, type DeviceClient } from "../src/device-client/create-device-client";
import { startPrefill } from "../src/prefill/start-prefill";

let n = 0;
// Llama-3-8B's shape, 16 tokens, bf16: 32 layers; the stalling mocks stop after 8 chunks.
const request = (patch: Partial<PrefillRequest> = {}): PrefillRequest => ({
  requestId: `close-${process.pid}-${++n}`,
  modelId: "llama-3-8b",
  promptTokenIds: Uint32Array.from({ length: 16 }, (_, i) => (i * 11 + n) % 1000),
  kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  maxChunkBytes: 16_384,
  ...patch,
});

/** Resolves once `run` yielded its first layer (the device then stalls). */
async function firstLayer(run: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of run) return;
}

/** This process's shared-memory region files. */
const regionFiles = () =>
  readdirSync("/dev/shm").filter((name) => name.startsWith(`opal-${process.pid}-`));

describe("closing a device client", () => {
  let stalling: MockServer;
  beforeAll(async () => {
    stalling = await serveMockDevice(
      { models: ["llama-3-8b"], faults: { stallAfterChunks: 8 } },
      { port: 0 },
    );
  });
  afterAll(() => stalling.close({ graceMs: 0 }));

  it("ends a run in flight with CANCELLED naming the client, and the device's prefill with it", async () => {
    const client = createDeviceClient(stalling.address);
    const run = startPrefill(client, request({ retentionSeconds: 30 }));
    await firstLayer(run);
    const started = performance.now();
    await client.close();
    const error = await expectOpalError(run.result, Code.CANCELLED, Reason.CANCELLED);
    expect(error.rawMessage).toBe(`the client for ${stalling.address} was closed`);
    expect(performance.now() - started).toBeLessThan(2_000);
    for (let i = 0; i < 100 && stalling.device.stats.activePrefills > 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 10));
    expect(stalling.device.stats.activePrefills).toBe(0);
  });

  it("fails a run started after close() at once, without retrying", async () => {
    const client = createDeviceClient(stalling.address);
    await client.close();
    let prefills = 0;
    const counted: DeviceClient = {
      ...client,
      prefill(req, call) {
        prefills++;
        return client.prefill(req, call);
      },
    };
    await expectOpalError(
      startPrefill(counted, request(), { retry: { maxAttempts: 4, initialBackoffMs: 1_000 } })
        .result,
      Code.CANCELLED,
      Reason.CANCELLED,
    );
    expect(prefills).toBe(1);
  });

  it.skipIf(process.platform !== "linux")(
    "removes the region of a shared-memory prefill it ended",
    async () => {
      const shm = await serveMockDevice(
        { models: ["llama-3-8b"], faults: { stallAfterChunks: 8 } },
        { port: 0, sharedMemory: true },
      );
      try {
        const client = createDeviceClient(shm.address, { dataPlane: "shared-memory" });
        const run = startPrefill(client, request());
        await firstLayer(run);
        expect(regionFiles()).toHaveLength(1);
        await client.close();
        await expectOpalError(run.result, Code.CANCELLED, Reason.CANCELLED);
        expect(regionFiles()).toEqual([]);
      } finally {
        await shm.close({ graceMs: 0 });
      }
    },
  );
});

describe("createDeviceClient options", () => {
  it.each<[string, unknown, DeviceClientOptions]>([
    ["target", "", {}],
    ["channel.keepaliveTimeMs", "127.0.0.1:1", { channel: { keepaliveTimeMs: 1_000 } }],
    ["channel.flowControlWindowBytes", "127.0.0.1:1", { channel: { flowControlWindowBytes: NaN } }],
    ["channel.maxMessageBytes", "127.0.0.1:1", { channel: { maxMessageBytes: 0 } }],
    ["channel.keepaliveTimeoutMs", "127.0.0.1:1", { channel: { keepaliveTimeoutMs: -1 } }],
    ["defaultUnaryTimeoutMs", "127.0.0.1:1", { defaultUnaryTimeoutMs: NaN }],
    ["sharedMemoryMaxBytes", "127.0.0.1:1", { sharedMemoryMaxBytes: -1 }],
    ["chunkBytes", "127.0.0.1:1", { chunkBytes: "huge" as never }],
    ["dataPlane", "127.0.0.1:1", { dataPlane: "rdma" as never }],
    ["token", "127.0.0.1:1", { token: "secret\nX-Injected: 1" }],
  ])("refuses a bad %s with INVALID_ARGUMENT naming it", (field, target, options) => {
    let thrown: unknown;
    try {
      createDeviceClient(target as string, options);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(OpalError);
    const error = thrown as OpalError;
    expect({ code: error.code, reason: error.reason }).toEqual({
      code: Code.INVALID_ARGUMENT,
      reason: Reason.INVALID_FIELD,
    });
    expect(error.fieldViolations.map((v) => v.field)).toEqual([field]);
    expect(error.message).toMatch(/expected .+, got/);
    expect(error.message).not.toContain("secret");
  });
});

describe("uploading weights", () => {
  it("stops reading the weights once the device has answered, closing their iterator", async () => {
    const server = await serveMockDevice({ models: [] }, { port: 0 });
    const client = createDeviceClient(server.address);
    let sent = 0;
    let closed = false;
    const weights = (async function* () {
      try {
        // Far more than the transport buffers: the upload must wait for `drain` on the way.
        for (; sent < 512; sent++) yield new Uint8Array(1 << 20);
      } finally {
        closed = true;
      }
    })();
    try {
      await expectOpalError(
        client.loadModel({
          modelId: "bad",
          configJson: "{not json",
          weightsByteLength: 512 << 20,
          weights,
        }),
        Code.INVALID_ARGUMENT,
        Reason.MODEL_CONFIG_INVALID,
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(closed).toBe(true);
      expect(sent).toBeLessThan(512);
    } finally {
      await client.close();
      await server.close({ graceMs: 0 });
    }
  });
});
