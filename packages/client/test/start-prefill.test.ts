import { Code } from "@opal/core";
import type { PrefillDriver, PrefillEvent, PrefillRequest } from "@opal/driver";
import { createMockDevice } from "@opal/mock";
import { expectOpalError } from "@opal/testing";
import { describe, expect, it } from "vitest";
import { startPrefill } from "../src/start-prefill";

let n = 0;
const request = (patch: Partial<PrefillRequest> = {}): PrefillRequest => ({
  requestId: `run-${++n}`,
  modelId: "opal-tiny",
  promptTokenIds: Uint32Array.from({ length: 20 }, (_, i) => i + 1),
  kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  maxChunkBytes: 300,
  ...patch,
});

/** A driver whose prefill replays the mock's events through `edit`. */
function tampered(edit: (events: PrefillEvent[]) => PrefillEvent[]): PrefillDriver {
  const device = createMockDevice({ models: ["opal-tiny"] });
  return {
    ...device,
    async *prefill(req, options) {
      const events: PrefillEvent[] = [];
      for await (const e of device.prefill(req, options)) {
        events.push(
          e.type === "chunk"
            ? { ...e, chunk: { ...e.chunk, data: Uint8Array.from(e.chunk.data) } }
            : e,
        );
      }
      yield* edit(events);
    },
  };
}

describe("startPrefill", () => {
  it("yields verified layers in order and resolves with the complete cache and transfer figures", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    const run = startPrefill(device, request());
    const seen: number[] = [];
    for await (const layer of run) seen.push(layer.layer);
    const outcome = await run.result;
    expect(seen).toEqual([...Array(outcome.cache.descriptor.numLayers).keys()]);
    expect(outcome.transfer.kvBytes).toBe(outcome.stats.kvTotalBytes);
    expect(outcome.transfer.timeToFirstLayerMs).toBeGreaterThan(0);
    expect(outcome.cache.part(0, "k").byteLength).toBe(20 * 2 * 16 * 2);
  });

  it("drives the stream even when nobody iterates the layers", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    const outcome = await startPrefill(device, request()).result;
    expect(outcome.stats.promptTokens).toBe(20);
  });

  it("rejects a stream that ends without `completed` (STREAM_INCOMPLETE), never presenting a cache", async () => {
    const driver = tampered((events) => events.slice(0, -1));
    await expectOpalError(
      startPrefill(driver, request()).result,
      Code.DATA_LOSS,
      "STREAM_INCOMPLETE",
    );
  });

  it("rejects `completed` arriving before the last chunk", async () => {
    const driver = tampered((events) => [...events.slice(0, 3), events.at(-1)!]);
    await expectOpalError(
      startPrefill(driver, request()).result,
      Code.DATA_LOSS,
      "STREAM_INCOMPLETE",
    );
  });

  it("rejects a corrupted chunk by its CRC32C", async () => {
    const driver = tampered((events) => {
      const chunk = events.find((e) => e.type === "chunk") as Extract<
        PrefillEvent,
        { type: "chunk" }
      >;
      chunk.chunk.data[0]! ^= 1;
      return events;
    });
    await expectOpalError(
      startPrefill(driver, request()).result,
      Code.DATA_LOSS,
      "CHECKSUM_MISMATCH",
    );
  });

  it("rejects a cache whose digest disagrees with the device's, even with valid CRCs", async () => {
    const driver = tampered((events) => {
      const last = events.at(-1) as Extract<PrefillEvent, { type: "completed" }>;
      const kvDigest = Uint8Array.from(last.stats.kvDigest);
      kvDigest[0]! ^= 1;
      return [...events.slice(0, -1), { type: "completed", stats: { ...last.stats, kvDigest } }];
    });
    const error = await expectOpalError(
      startPrefill(driver, request()).result,
      Code.DATA_LOSS,
      "CHECKSUM_MISMATCH",
    );
    expect(error.message).toMatch(/does not match the device's/);
  });

  it("fails the layer iteration too when the run fails", async () => {
    const driver = tampered((events) => events.slice(0, -1));
    const run = startPrefill(driver, request());
    await expectOpalError(
      (async () => {
        for await (const _ of run) {
          // consume
        }
      })(),
      Code.DATA_LOSS,
      "STREAM_INCOMPLETE",
    );
  });

  it("passes the caller's cancellation to the device", async () => {
    const device = createMockDevice({
      models: ["opal-tiny"],
      faults: { stallAfterChunks: 1, stallMs: 10_000 },
    });
    const controller = new AbortController();
    const run = startPrefill(device, request(), { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await expectOpalError(run.result, Code.CANCELLED);
    expect(device.stats.activePrefills).toBe(0);
  });
});
