import { Code } from "@opal/core";
import type { PrefillDriver, PrefillRequest } from "@opal/driver";
import { digestKvCache, partsOf } from "@opal/kv";
import { createMockDevice, type MockServer, serveMockDevice } from "@opal/mock";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDeviceClient } from "../src/device-client/create-device-client";
import { startPrefill } from "../src/prefill/start-prefill";

const KIB = 1024;
// Llama-3-8B's shape, 64 tokens, bf16: each layer part is 64 · 8 · 128 · 2 = 128 KiB.
const PART_BYTES = 128 * KIB;
let n = 0;
const request = (patch: Partial<PrefillRequest> = {}): PrefillRequest => ({
  requestId: `chunks-${++n}`,
  modelId: "llama-3-8b",
  promptTokenIds: Uint32Array.from({ length: 64 }, (_, i) => i + 1),
  kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  ...patch,
});

async function chunkSizes(
  device: PrefillDriver,
  req: PrefillRequest,
  call: { keepsChunks?: boolean } = {},
): Promise<Set<number>> {
  const sizes = new Set<number>();
  for await (const event of device.prefill(req, call)) {
    if (event.type === "chunk") sizes.add(event.chunk.data.byteLength);
  }
  return sizes;
}

describe("chunk size and zero-copy receive (DeviceClientOptions.chunkBytes, PF-48)", () => {
  let small: MockServer;
  let large: MockServer;
  beforeAll(async () => {
    small = await serveMockDevice(
      { models: ["llama-3-8b"], limits: { preferredChunkBytes: 1000, maxChunkBytes: 64 * KIB } },
      { port: 0 },
    );
    large = await serveMockDevice({ models: ["llama-3-8b"] }, { port: 0 });
  });
  afterAll(async () => {
    await small.close();
    await large.close();
  });

  it("asks for the device's largest chunk unless told to leave the choice to the device", async () => {
    const largest = createDeviceClient(small.address);
    const preferred = createDeviceClient(small.address, { chunkBytes: "device" });
    try {
      expect(await chunkSizes(largest, request())).toEqual(new Set([64 * KIB]));
      expect(Math.max(...(await chunkSizes(preferred, request())))).toBe(1000);
      // A request that names its chunk size keeps it.
      expect(await chunkSizes(largest, request({ maxChunkBytes: 4096 }))).toEqual(new Set([4096]));
    } finally {
      await largest.close();
      await preferred.close();
    }
  });

  it("asks for at most 2 MiB chunks for a caller that copies them (keepsChunks: false)", async () => {
    const client = createDeviceClient(large.address);
    // 1,100 tokens: each layer part is 1,100 · 8 · 128 · 2 = 2,252,800 bytes, over 2 MiB.
    const parts = () =>
      request({ promptTokenIds: Uint32Array.from({ length: 1100 }, (_, i) => i) });
    try {
      expect(await chunkSizes(client, parts())).toEqual(new Set([2_252_800]));
      expect(await chunkSizes(client, parts(), { keepsChunks: false })).toEqual(
        new Set([2 * 1024 * KIB, 2_252_800 - 2 * 1024 * KIB]),
      );
    } finally {
      await client.close();
    }
  });

  it("reads the capabilities once for concurrent calls; one caller's abort fails only that caller", async () => {
    const client = createDeviceClient(small.address);
    try {
      const controller = new AbortController();
      // The caller that will abort starts the shared capabilities read.
      const cancelled = (async () => {
        for await (const _ of client.prefill(request(), { signal: controller.signal }));
      })();
      const unaffected = chunkSizes(client, request());
      controller.abort();
      const [other, mine] = await Promise.allSettled([unaffected, cancelled]);
      expect(other).toEqual({ status: "fulfilled", value: new Set([64 * KIB]) });
      expect(mine.status).toBe("rejected");
      expect((mine as PromiseRejectedResult).reason.code).toBe(Code.CANCELLED);
    } finally {
      await client.close();
    }
  });

  it("keeps whole-part chunks where they arrived, 8-byte aligned, in the memory sink's cache", async () => {
    const client = createDeviceClient(large.address);
    try {
      expect(client.yieldsOwnedChunks).toBe(true);
      const outcome = await startPrefill(client, request()).result;
      const { receipt } = outcome;
      const expected = createMockDevice({ models: ["llama-3-8b"] });
      const local = await startPrefill(expected, request()).result;
      expect(digestKvCache(receipt)).toEqual(digestKvCache(local.receipt));
      for (let layer = 0; layer < receipt.descriptor.numLayers; layer++) {
        for (const part of partsOf(receipt.descriptor)) {
          const view = receipt.part(layer, part);
          expect(view.byteLength).toBe(PART_BYTES);
          expect(view.byteOffset % 8).toBe(0);
          // Adopted: a view into the received message, not a buffer of its own.
          expect(view.buffer.byteLength).toBeGreaterThan(PART_BYTES);
        }
      }
      await expected.close();
    } finally {
      await client.close();
    }
  });
});
