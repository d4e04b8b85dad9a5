import { Code, OpalError } from "@opal/core";
import type { PrefillDriver, PrefillEvent, PrefillRequest } from "@opal/driver";
import { createMockDevice } from "@opal/mock";
import { expectOpalError } from "@opal/testing";
import { describe, expect, it, vi } from "vitest";
import { startPrefill } from "../src/prefill/start-prefill";

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

/** A mock (`failing`) and a driver over it whose every prefill breaks after two chunks. */
function breakingAfterTwoChunks() {
  const failing = createMockDevice({ models: ["opal-tiny"] });
  const breaking: PrefillDriver = {
    ...failing,
    async *prefill(req, options) {
      let chunks = 0;
      for await (const event of failing.prefill(req, options)) {
        if (event.type === "chunk" && ++chunks > 2) throw new OpalError(Code.UNAVAILABLE, "cut");
        yield event;
      }
    },
  };
  return { failing, breaking };
}

describe("startPrefill", () => {
  it("yields verified layers in order and resolves with the complete cache and transfer figures", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    const run = startPrefill(device, request());
    const seen: number[] = [];
    for await (const layer of run) seen.push(layer.layer);
    const outcome = await run.result;
    expect(seen).toEqual([...Array(outcome.descriptor.numLayers).keys()]);
    expect(outcome.transfer.kvBytes).toBe(outcome.stats.kvTotalBytes);
    expect(outcome.transfer.timeToFirstLayerMs).toBeGreaterThan(0);
    expect(outcome.receipt.part(0, "k").byteLength).toBe(20 * 2 * 16 * 2);
  });

  it("tells the device whether the sink keeps chunks (DriverCallOptions.keepsChunks)", async () => {
    const mock = createMockDevice({ models: ["opal-tiny"] });
    const hints: (boolean | undefined)[] = [];
    const device: PrefillDriver = {
      ...mock,
      prefill(req, options) {
        hints.push(options?.keepsChunks);
        return mock.prefill(req, options);
      },
    };
    await startPrefill(device, request()).result;
    const copying = {
      open() {},
      writeLayer() {},
      commit: () => "done",
      abort() {},
    };
    await startPrefill(device, request(), { sink: () => copying }).result;
    expect(hints).toEqual([true, false]);
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

  it("resumes a broken stream from its last verified position while the cache is retained", async () => {
    const device = createMockDevice({ models: ["opal-tiny"], faults: { abortAfterChunks: 5 } });
    const reference = await startPrefill(createMockDevice({ models: ["opal-tiny"] }), request())
      .result;
    const outcome = await startPrefill(device, request({ retentionSeconds: 30 })).result;
    expect([outcome.transfer.attempts, outcome.transfer.resumes]).toEqual([1, 1]);
    expect(outcome.stats.kvDigest).toEqual(reference.stats.kvDigest);
    expect(outcome.stats.firstTokenId).toBe(reference.stats.firstTokenId);
  });

  it("prefills again with the same request_id when the lease ended before the resume", async () => {
    let skewMs = 0;
    const mock = createMockDevice({
      models: ["opal-tiny"],
      faults: { abortAfterChunks: 3 },
      now: () => Date.now() + skewMs,
    });
    const seen: string[] = [];
    const device: PrefillDriver = {
      ...mock,
      prefill(req, options) {
        seen.push(`prefill ${req.requestId}`);
        if (seen.length > 1) mock.setFaults({});
        return mock.prefill(req, options);
      },
      fetchKv(req, options) {
        seen.push("fetchKv");
        skewMs = 120_000; // past the 30 s lease: the device has let the cache go
        return mock.fetchKv(req, options);
      },
    };
    const reference = await startPrefill(createMockDevice({ models: ["opal-tiny"] }), request())
      .result;
    const req = request({ retentionSeconds: 30 });
    const outcome = await startPrefill(device, req, { retry: { initialBackoffMs: 1 } }).result;
    expect(seen).toEqual([`prefill ${req.requestId}`, "fetchKv", `prefill ${req.requestId}`]);
    expect([outcome.transfer.attempts, outcome.transfer.resumes]).toEqual([2, 1]);
    expect(outcome.stats.kvDigest).toEqual(reference.stats.kvDigest);
  });

  it("releases the retained caches when the deadline ends the run during a backoff", async () => {
    const { failing, breaking } = breakingAfterTwoChunks();
    const random = vi.spyOn(Math, "random").mockReturnValue(1); // backoff = initialBackoffMs
    try {
      await expectOpalError(
        startPrefill(breaking, request({ retentionSeconds: 30 }), {
          resume: false,
          retry: { maxAttempts: 3, initialBackoffMs: 1_000 },
          timeoutMs: 200,
        }).result,
        Code.DEADLINE_EXCEEDED,
      );
    } finally {
      random.mockRestore();
    }
    expect(failing.stats.prefillsStarted).toBe(1);
    await vi.waitFor(() => expect(failing.stats.retainedKvBytes).toBe(0), { timeout: 500 });
  });

  it("releases the caches retained for a run that failed, keeping the returned one on success", async () => {
    // Every attempt (the retry replays the retained cache, PF-7) breaks after two chunks, and
    // resume is off: the device retains a cache nobody will get.
    const { failing, breaking } = breakingAfterTwoChunks();
    await expectOpalError(
      startPrefill(breaking, request({ retentionSeconds: 30 }), {
        resume: false,
        retry: { maxAttempts: 2, initialBackoffMs: 1 },
      }).result,
      Code.UNAVAILABLE,
    );
    expect(failing.stats.prefillsStarted).toBe(1);
    await vi.waitFor(() => expect(failing.stats.retainedKvBytes).toBe(0));

    const healthy = createMockDevice({ models: ["opal-tiny"] });
    const outcome = await startPrefill(healthy, request({ retentionSeconds: 30 })).result;
    expect(healthy.stats.retainedKvBytes).toBe(outcome.stats.kvTotalBytes);
    const { released } = await healthy.releaseKv(outcome.kvHandle);
    expect(released).toBe(true);
  });

  it("resumes past a corrupted chunk: the bad bytes are never used", async () => {
    const device = createMockDevice({ models: ["opal-tiny"], faults: { corruptChunk: 3 } });
    const outcome = await startPrefill(device, request({ retentionSeconds: 30 })).result;
    expect(outcome.transfer.resumes).toBe(1);
    const clean = await startPrefill(createMockDevice({ models: ["opal-tiny"] }), request()).result;
    expect(outcome.stats.kvDigest).toEqual(clean.stats.kvDigest);
  });

  it("retries without retention, with a fresh sink per attempt, aborting the failed one", async () => {
    const mock = createMockDevice({ models: ["opal-tiny"], faults: { abortAfterChunks: 5 } });
    let calls = 0;
    // The first attempt breaks, the second succeeds.
    const device: PrefillDriver = {
      ...mock,
      prefill(req, options) {
        if (++calls === 2) mock.setFaults({});
        return mock.prefill(req, options);
      },
    };
    const events: string[] = [];
    const sink = () => {
      const id = events.length;
      return {
        open: () => void events.push(`open ${id}`),
        writeLayer: () => {},
        commit: () => events.push(`commit ${id}`),
        abort: () => void events.push(`abort ${id}`),
      };
    };
    const outcome = await startPrefill(device, request(), {
      sink,
      retry: { initialBackoffMs: 1, maxAttempts: 10 },
    }).result;
    expect(outcome.transfer.attempts).toBe(2);
    expect(events.filter((e) => e.startsWith("commit"))).toHaveLength(1);
    expect(events.filter((e) => e.startsWith("abort"))).toHaveLength(outcome.transfer.attempts - 1);
  });

  it("gives up after the retry budget with the device's error", async () => {
    const device = createMockDevice({
      models: ["opal-tiny"],
      faults: { errors: { Prefill: { rate: 1 } } },
    });
    const error = await expectOpalError(
      startPrefill(device, request(), { retry: { maxAttempts: 3, initialBackoffMs: 1 } }).result,
      Code.UNAVAILABLE,
      "DEVICE_FAULT",
    );
    expect(error.message).toMatch(/injected fault/);
  });

  it("does not retry a request the device rejected as wrong", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    const started = device.stats.prefillsStarted;
    await expectOpalError(
      startPrefill(device, request({ modelId: "nope" })).result,
      Code.FAILED_PRECONDITION,
      "MODEL_NOT_LOADED",
    );
    expect(device.stats.prefillsStarted).toBe(started);
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
