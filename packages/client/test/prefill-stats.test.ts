import type { DriverCallOptions, PrefillEvent, PrefillRequest, PrefillStats } from "@opal/driver";
import { cacheByteLength, computeOpalBlockHashes, type KvPart, partsOf } from "@opal/kv";
import { createMockDevice, type MockDevice, mockProfile } from "@opal/mock";
import { createDeviceServer, type DeviceServer } from "@opal/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDeviceClient, type DeviceClient } from "../src/device-client/create-device-client";
import type { PrefillOutcome } from "../src/prefill/prefill-run";
import { startPrefill } from "../src/prefill/start-prefill";

// llama-3-8b (32 layers, 8 KV heads of 128), bf16: 2 KiB per token per part, 128 KiB per token
// over the whole cache. A slow custom profile (20 TFLOP/s) makes a 64-token prefill take tens of
// ms of simulated compute, so device time, energy and (with one slot) queue time are not zero.
const BYTES_PER_TOKEN = 32 * 2 * 8 * 128 * 2;
const PART_BYTES_PER_TOKEN = 8 * 128 * 2;
const BLOCK = 16;

/** What the device itself emitted for each request (before the wire), chunks counted in bytes. */
interface DeviceSide {
  readonly accepted?: Extract<PrefillEvent, { type: "accepted" }>;
  readonly completed?: Extract<PrefillEvent, { type: "completed" }>;
  readonly chunkBytes: number;
}

let mock: MockDevice;
let server: DeviceServer;
let client: DeviceClient;
const sent = new Map<string, DeviceSide>();

beforeAll(async () => {
  mock = createMockDevice({
    models: ["llama-3-8b"],
    profile: { ...mockProfile("iris-nova"), name: "slow-iris", effectiveTflops: 20 },
    limits: { maxConcurrentPrefills: 1 },
  });
  // The served driver records what the device sends, so the client's figures are checked against
  // the device's own, not against what the client decoded.
  server = await createDeviceServer(
    {
      ...mock,
      async *prefill(request: PrefillRequest, call?: DriverCallOptions) {
        let side: DeviceSide = { chunkBytes: 0 };
        for await (const event of mock.prefill(request, call)) {
          if (event.type === "accepted") side = { ...side, accepted: event };
          else if (event.type === "completed") side = { ...side, completed: event };
          else if (event.type === "chunk")
            side = { ...side, chunkBytes: side.chunkBytes + event.chunk.data.byteLength };
          sent.set(request.requestId, side);
          yield event;
        }
      },
    },
    { port: 0 },
  );
  client = createDeviceClient(server.address);
});
afterAll(async () => {
  await client?.close();
  await server?.shutdown({ graceMs: 0 });
  await mock?.close();
});

let n = 0;
const request = (tokens: Uint32Array, patch: Partial<PrefillRequest> = {}): PrefillRequest => ({
  requestId: `stats-${++n}`,
  modelId: "llama-3-8b",
  promptTokenIds: tokens,
  kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: BLOCK },
  maxChunkBytes: 64 * 1024,
  ...patch,
});
/** `length` tokens from `first`, so each test's prompts share no prefix with another's. */
const tokens = (first: number, length: number) => Uint32Array.from({ length }, (_, i) => first + i);

function deviceSide(requestId: string): Required<DeviceSide> {
  const side = sent.get(requestId);
  if (!side?.accepted || !side.completed)
    throw new Error(`the device did not complete ${requestId}`);
  return side as Required<DeviceSide>;
}

/** The client's stats against the device's `completed` statistics, field by field. */
function expectDeviceStats(stats: PrefillStats, device: PrefillStats) {
  const { kvDigest, ...figures } = stats;
  const { kvDigest: deviceDigest, ...deviceFigures } = device;
  expect(figures).toEqual(deviceFigures);
  expect(Buffer.from(kvDigest).toString("hex")).toBe(Buffer.from(deviceDigest).toString("hex"));
}

const receivedBytes = (outcome: PrefillOutcome<import("@opal/kv").KvCache>) => {
  let total = 0;
  for (let layer = 0; layer < outcome.descriptor.numLayers; layer++)
    for (const part of partsOf(outcome.descriptor))
      total += outcome.receipt.part(layer, part).byteLength;
  return total;
};

describe("prefill statistics over gRPC", () => {
  it("transfer figures: kvBytes is the descriptor's size; gigabytesPerSecond = kvBytes / streamSeconds / 1e9", async () => {
    const req = request(tokens(100, 64));
    const outcome = await startPrefill(client, req).result;
    const { transfer } = outcome;
    expect(transfer.kvBytes).toBe(64 * BYTES_PER_TOKEN);
    expect(transfer.kvBytes).toBe(cacheByteLength(outcome.descriptor));
    expect(transfer.kvBytes).toBe(receivedBytes(outcome));
    expect(transfer.kvBytes).toBe(deviceSide(req.requestId).chunkBytes);
    expect(transfer.gigabytesPerSecond).toBe(transfer.kvBytes / transfer.streamSeconds / 1e9);
    // A measured stream (not the 1e-9 floor), within the call.
    expect(transfer.streamSeconds).toBeGreaterThan(1e-6);
    expect(transfer.streamSeconds).toBeLessThanOrEqual(transfer.totalMs / 1000);
    expect({ attempts: transfer.attempts, resumes: transfer.resumes }).toEqual({
      attempts: 1,
      resumes: 0,
    });
  });

  it("device figures: queue time, device time and energy are the device's, exactly", async () => {
    // One slot: the second of two concurrent prefills waits for the first.
    const a = request(tokens(300, 64));
    const b = request(tokens(400, 64));
    const [first, second] = await Promise.all([
      startPrefill(client, a).result,
      startPrefill(client, b).result,
    ]);
    for (const [req, outcome] of [
      [a, first],
      [b, second],
    ] as const) {
      const device = deviceSide(req.requestId);
      expectDeviceStats(outcome.stats, device.completed.stats);
      expect(outcome.stats.queueTimeUs).toBe(device.accepted.queueTimeUs);
      expect(outcome.stats.deviceTimeUs).toBe(device.completed.stats.deviceTimeUs);
      expect(outcome.stats.energyJoules).toBe(device.completed.stats.energyJoules);
      expect(outcome.kvHandle).toBe(device.accepted.kvHandle);
    }
    // The figures are real ones, so a client that dropped them (zeros) would fail above.
    const queued = [first, second].map((o) => o.stats.queueTimeUs).sort((x, y) => x - y);
    expect(queued[0]).toBe(0);
    expect(queued[1]).toBeGreaterThan(1000);
    for (const outcome of [first, second]) {
      expect(outcome.stats.deviceTimeUs).toBeGreaterThan(1000);
      // The device's energy model: active power (1,200 W) × device time.
      expect(outcome.stats.energyJoules).toBeCloseTo((1200 * outcome.stats.deviceTimeUs) / 1e6, 2);
    }
  });

  it("a second prefill of a cached prefix reports the cached blocks' tokens as prefix-cache hits", async () => {
    const prompt = tokens(1000, 40);
    const first = await startPrefill(client, request(prompt)).result;
    expect(first.stats.prefixCacheHitTokens).toBe(0);
    // Same first 35 tokens: two whole 16-token blocks (32 tokens) are cached, the third differs.
    const similar = Uint32Array.from(prompt);
    similar.fill(7, 35);
    const req = request(similar);
    const second = await startPrefill(client, req).result;
    expect(second.stats.prefixCacheHitTokens).toBe(2 * BLOCK);
    expectDeviceStats(second.stats, deviceSide(req.requestId).completed.stats);
    // Hits save compute, not transfer: the whole cache still arrives.
    expect(second.transfer.kvBytes).toBe(40 * BYTES_PER_TOKEN);
    expect(second.stats.deviceTimeUs).toBeLessThan(first.stats.deviceTimeUs);
  });

  it.each([
    ["decoderPrefix.numTokens 20", 20, () => ({ numTokens: 20 })],
    [
      "decoderPrefix.blockHashes of 2 blocks",
      2 * BLOCK,
      (prompt: Uint32Array) => ({
        blockHashes: computeOpalBlockHashes(prompt, { blockSizeTokens: BLOCK }).slice(0, 2),
      }),
    ],
  ] as const)("%s skips exactly %i tokens and sends only the rest", async (_, skipped, prefix) => {
    const prompt = tokens(2000 + skipped, 64);
    const full = await startPrefill(client, request(prompt)).result;
    const req = request(prompt, { decoderPrefix: prefix(prompt) });
    const partial = await startPrefill(client, req).result;
    expect(partial.stats.decoderPrefixTokens).toBe(skipped);
    expect(partial.descriptor).toMatchObject({ tokenStart: skipped, tokenCount: 64 - skipped });
    const bytes = (64 - skipped) * BYTES_PER_TOKEN;
    expect(partial.transfer.kvBytes).toBe(bytes);
    expect(deviceSide(req.requestId).chunkBytes).toBe(bytes);
    expect(receivedBytes(partial)).toBe(bytes);
    expect(full.transfer.kvBytes - partial.transfer.kvBytes).toBe(skipped * BYTES_PER_TOKEN);
    // The tokens sent are the prompt's last ones: their KV is the tail of the full cache's.
    for (const layer of [0, 31]) {
      for (const part of partsOf(full.descriptor)) {
        expect(
          Buffer.from(partial.receipt.part(layer, part)).equals(
            Buffer.from(full.receipt.part(layer, part).subarray(skipped * PART_BYTES_PER_TOKEN)),
          ),
        ).toBe(true);
      }
    }
  });

  it("each LayerReady's parts are byte-identical to the committed memory-sink cache's", async () => {
    const req = request(tokens(5000, 48));
    const run = startPrefill(client, req);
    const seen: Array<{ layer: number; parts: Record<KvPart, Buffer> }> = [];
    for await (const ready of run) {
      // Copied on arrival: a later reuse or overwrite of the delivered views shows as a mismatch.
      const parts = {} as Record<KvPart, Buffer>;
      for (const part of partsOf(ready.descriptor))
        parts[part] = Buffer.from(Uint8Array.from(ready.parts[part]!));
      seen.push({ layer: ready.layer, parts });
    }
    const { receipt } = await run.result;
    expect(seen.map((s) => s.layer)).toEqual(Array.from({ length: 32 }, (_, i) => i));
    const expected = createMockDevice({ models: ["llama-3-8b"] });
    try {
      const local = (await startPrefill(expected, { ...req, requestId: "local" }).result).receipt;
      for (const { layer, parts } of seen) {
        for (const part of partsOf(receipt.descriptor)) {
          expect(parts[part].byteLength).toBe(48 * PART_BYTES_PER_TOKEN);
          expect(parts[part].equals(receipt.part(layer, part)), `layer ${layer} ${part}`).toBe(
            true,
          );
          // And both are the device's cache (computed again in process, deterministically).
          expect(parts[part].equals(local.part(layer, part)), `layer ${layer} ${part}`).toBe(true);
        }
      }
    } finally {
      await expected.close();
    }
  });
});
