import { Code, Reason } from "@opal/core";
import { PROTOCOL_VERSION, type PrefillRequest } from "@opal/driver";
import { toFloat32 } from "@opal/kv";
import { createPresetWeights, encodeHfCheckpoint } from "@opal/reference";
import { collectPrefill, expectOpalError } from "@opal/testing";
import { describe, expect, it, vi } from "vitest";
import { createMockDevice } from "../src/create-mock-device";
import { createNamedMockModel, createReferenceMockModel, mockModelFlops } from "../src/mock-model";
import { type MockProfile, mockProfile, simulatedTimeUs } from "../src/mock-profile";

let counter = 0;
const request = (patch: Partial<PrefillRequest> = {}): PrefillRequest => ({
  requestId: `device-${++counter}`,
  modelId: "opal-tiny",
  promptTokenIds: Uint32Array.from({ length: 16 }, (_, i) => (i * 3 + counter) % 200),
  kvFormat: { dtype: "f32", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  maxChunkBytes: 1 << 20,
  ...patch,
});

/** A profile under which a prefill of `request` on `model` takes `deviceTimeMs` of device time. */
function profileFor(model: string, promptTokens: number, deviceTimeMs: number): MockProfile {
  const flops = createNamedMockModel(model).flops(promptTokens, 0);
  return {
    ...mockProfile("instant"),
    name: "test",
    effectiveTflops: flops / (deviceTimeMs / 1000) / 1e12,
  };
}

/** Milliseconds from `accepted` to `completed`, with `onChunk` awaited on every chunk. */
async function streamMs(
  events: AsyncIterable<{ type: string; chunk?: { layer: number } }>,
  onChunk: (layer: number) => Promise<void> = async () => {},
): Promise<number> {
  let acceptedAt = 0;
  let completedAt = 0;
  for await (const event of events) {
    if (event.type === "accepted") acceptedAt = performance.now();
    if (event.type === "chunk") await onChunk(event.chunk!.layer);
    if (event.type === "completed") completedAt = performance.now();
  }
  return completedAt - acceptedAt;
}

describe("the mock's timing model", () => {
  it("charges a prefill mockModelFlops under its profile, for reference and synthetic models", async () => {
    const device = createMockDevice({ models: ["opal-small", "llama-3-8b"], profile: "iris-nova" });
    for (const modelId of ["opal-small", "llama-3-8b"]) {
      const outcome = await collectPrefill(device.prefill(request({ modelId })));
      const expected = simulatedTimeUs(mockProfile("iris-nova"), mockModelFlops(modelId, 16));
      expect(expected).toBeGreaterThan(0);
      expect(outcome.stats.deviceTimeUs).toBe(Math.round(expected));
      expect(mockModelFlops(modelId, 16)).toBe(createNamedMockModel(modelId).flops(16, 0));
    }
    expect(() => mockModelFlops("gpt-9", 16)).toThrow(/unknown model "gpt-9" \(expected one of/);
  });

  it("releases each layer at its share of the device time from the start, so a slow consumer overlaps compute", async () => {
    // opal-tiny has 2 layers: 150 ms each. A consumer spending 150 ms on layer 0 finds layer 1
    // due when it asks, so the stream takes the device time (300 ms), not device time + 150.
    const device = createMockDevice({
      models: ["opal-tiny"],
      profile: profileFor("opal-tiny", 16, 300),
    });
    let waited = false;
    const ms = await streamMs(device.prefill(request()), async (layer) => {
      if (layer === 0 && !waited) {
        waited = true;
        await new Promise((resolve) => setTimeout(resolve, 150));
      }
    });
    expect(ms).toBeGreaterThanOrEqual(280);
    expect(ms).toBeLessThan(400);
  });

  it("does not round each sub-millisecond layer up to a timer tick", async () => {
    // llama-3-70b has 80 layers: 8 ms of device time is 0.1 ms a layer. Sleeping per layer would
    // take at least 80 ms (a timer waits at least 1 ms).
    const device = createMockDevice({
      models: ["llama-3-70b"],
      profile: profileFor("llama-3-70b", 16, 8),
    });
    const ms = await streamMs(device.prefill(request({ modelId: "llama-3-70b" })));
    expect(ms).toBeGreaterThanOrEqual(7);
    expect(ms).toBeLessThan(50);
  });
});

describe("createMockDevice options", () => {
  it("rejects limits a device cannot run with, naming the limit", () => {
    expect(() => createMockDevice({ limits: { maxConcurrentPrefills: 0 } })).toThrow(
      "[invalid_argument] limits.maxConcurrentPrefills must be a whole number >= 1 (got 0)",
    );
    expect(() => createMockDevice({ limits: { maxQueuedPrefills: 1.5 } })).toThrow(
      "limits.maxQueuedPrefills must be a whole number >= 0 (got 1.5)",
    );
    expect(() =>
      createMockDevice({ limits: { preferredChunkBytes: 2048, maxChunkBytes: 1024 } }),
    ).toThrow("limits.preferredChunkBytes must be at most maxChunkBytes 1024 (got 2048)");
    expect(() => createMockDevice({ limits: { maxSlots: 2 } as never })).toThrow(
      /limits\.maxSlots is not a limit \(expected one of maxConcurrentPrefills, /,
    );
    expect(createMockDevice({ limits: { maxQueuedPrefills: 0 } }).profile.name).toBe("instant");
  });
});

describe("MockDevice.getInfo", () => {
  it("reports the protocol version of this release, the one @opal/protocol checks", async () => {
    const info = await createMockDevice({ models: ["opal-tiny"] }).getInfo();
    expect(info.protocolVersion).toBe(PROTOCOL_VERSION);
  });
});

describe("MockDevice.stats", () => {
  it("counts injected faults since start, across setFaults, streams drawn under old faults included", async () => {
    const device = createMockDevice({
      models: ["opal-tiny"],
      faults: { errors: { GetInfo: { rate: 1 } } },
    });
    await expectOpalError(device.getInfo(), Code.UNAVAILABLE, Reason.DEVICE_FAULT);
    expect(device.stats.faultsInjected).toBe(1);
    device.setFaults({ stallAfterChunks: 1, stallMs: 10 });
    const events = device.prefill(request({ maxChunkBytes: 256 }))[Symbol.asyncIterator]();
    while ((await events.next()).value?.type !== "chunk");
    device.setFaults({});
    expect(device.stats.faultsInjected).toBe(1);
    while (!(await events.next()).done);
    expect(device.stats.faultsInjected).toBe(2);
  });
});

describe("MockDevice.watchTelemetry", () => {
  it("clamps the interval to 50..60,000 ms (telemetry.md), so 2^31 ms or more does not flood", async () => {
    vi.useFakeTimers();
    try {
      const device = createMockDevice();
      for (const [requested, expected] of [
        [2 ** 31, 60_000],
        [Number.MAX_VALUE, 60_000],
        [1, 50],
      ] as const) {
        const controller = new AbortController();
        let snapshots = 0;
        const watching = (async () => {
          for await (const _ of device.watchTelemetry(
            { intervalMs: requested },
            { signal: controller.signal },
          ))
            snapshots++;
        })().catch(() => {});
        await vi.advanceTimersByTimeAsync(0);
        expect(snapshots, `first snapshot at once for ${requested}`).toBe(1);
        await vi.advanceTimersByTimeAsync(expected - 1);
        expect(snapshots, `none before ${expected} ms for ${requested}`).toBe(1);
        await vi.advanceTimersByTimeAsync(1);
        expect(snapshots, `the next at ${expected} ms for ${requested}`).toBe(2);
        controller.abort();
        await watching;
      }
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("the mock's energy and power model", () => {
  /** 16 tokens on opal-tiny take 200 ms of device time at 1,000 W active, 100 W idle. */
  const profile = {
    ...profileFor("opal-tiny", 16, 200),
    activePowerWatts: 1000,
    idlePowerWatts: 100,
  };
  /** Telemetry's energy counter; the clock is frozen, so it holds no idle energy. */
  async function energyJoulesTotal(device: ReturnType<typeof createMockDevice>): Promise<number> {
    for await (const snapshot of device.watchTelemetry({})) return snapshot.energyJoulesTotal;
    throw new Error("no snapshot");
  }

  it("charges an aborted prefill for the device time it ran, a completed one for all of it", async () => {
    const device = createMockDevice({ models: ["opal-tiny"], profile, now: () => 1_000 });
    const full = await collectPrefill(device.prefill(request()));
    expect(full.stats.energyJoules).toBeCloseTo(1000 * 0.2, 6);
    expect(await energyJoulesTotal(device)).toBeCloseTo(full.stats.energyJoules, 6);

    // Layer 0 of 2 is released after 100 ms; the stream fails after its first chunk.
    device.setFaults({ abortAfterChunks: 1 });
    await expectOpalError(
      collectPrefill(device.prefill(request({ maxChunkBytes: 256 }))),
      Code.UNAVAILABLE,
      Reason.DEVICE_FAULT,
    );
    const faulted = (await energyJoulesTotal(device)) - full.stats.energyJoules;
    expect(faulted).toBeGreaterThanOrEqual(1000 * 0.1 * 0.95);
    expect(faulted).toBeLessThanOrEqual(full.stats.energyJoules);

    // A caller that gives up after 50 ms is charged for about 50 ms, not the full 200 ms.
    device.setFaults({});
    const before = await energyJoulesTotal(device);
    await expectOpalError(
      collectPrefill(device.prefill(request(), { timeoutMs: 50 })),
      Code.DEADLINE_EXCEEDED,
    );
    const cancelled = (await energyJoulesTotal(device)) - before;
    expect(cancelled).toBeGreaterThan(0);
    expect(cancelled).toBeLessThan(1000 * 0.1);
    expect(device.stats.prefillsCompleted).toBe(1);
  });

  it("never reports power below idle, nor charges less than idle power, under a cap below idle", async () => {
    const device = createMockDevice({
      models: ["opal-tiny"],
      profile: { ...profile, effectiveTflops: profile.effectiveTflops * 10 },
      faults: { powerCapWatts: 50 },
      limits: { maxConcurrentPrefills: 1 },
    });
    const running = collectPrefill(device.prefill(request()));
    await expect.poll(() => device.stats.activePrefills).toBe(1);
    for await (const snapshot of device.watchTelemetry({})) {
      expect(snapshot.utilization).toBe(1);
      expect(snapshot.powerWatts).toBe(100);
      break;
    }
    const { stats } = await running;
    // 20 ms unthrottled; throttled to 50/1000 of the throughput: 400 ms, drawing idle power.
    expect(stats.deviceTimeUs).toBe(400_000);
    expect(stats.energyJoules).toBeCloseTo(100 * 0.4, 6);
  });
});

describe("MockDevice.close", () => {
  it("ends calls in progress with UNAVAILABLE SHUTTING_DOWN, frees slots and retained caches", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    await collectPrefill(device.prefill(request({ retentionSeconds: 60 })));
    expect(device.stats.retainedKvBytes).toBeGreaterThan(0);
    device.setFaults({ stallAfterChunks: 1, stallMs: 60_000 });
    const stalled = collectPrefill(device.prefill(request()));
    const telemetry = (async () => {
      for await (const _ of device.watchTelemetry({ intervalMs: 60_000 }));
    })();
    await expect.poll(() => device.stats.activePrefills).toBe(1);
    const started = performance.now();
    await device.close();
    await expectOpalError(stalled, Code.UNAVAILABLE, Reason.SHUTTING_DOWN);
    await expectOpalError(telemetry, Code.UNAVAILABLE, Reason.SHUTTING_DOWN);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(device.stats.activePrefills).toBe(0);
    expect(device.stats.retainedKvBytes).toBe(0);
    await expectOpalError(device.getInfo(), Code.UNAVAILABLE, Reason.SHUTTING_DOWN);
  }, 5_000);
});

describe("the mock's retention budget (RT-1, RT-4)", () => {
  it("refuses a cache that does not fit beside leased ones, with RetryInfo, and never evicts a leased cache", async () => {
    let clock = 1_000_000;
    const probe = createMockDevice({ models: ["opal-tiny"] });
    const cacheBytes = (await collectPrefill(probe.prefill(request()))).stats.kvTotalBytes;
    const device = createMockDevice({
      models: ["opal-tiny"],
      // One tenant may use the whole budget here: this is about the device's budget (RT-1).
      limits: {
        maxRetainedBytes: Math.floor(cacheBytes * 1.5),
        maxRetainedBytesPerTenant: Math.floor(cacheBytes * 1.5),
      },
      now: () => clock,
    });
    const first = await collectPrefill(device.prefill(request({ retentionSeconds: 60 })));
    clock += 10_000;
    const refused = await expectOpalError(
      collectPrefill(device.prefill(request({ retentionSeconds: 60 }))),
      Code.RESOURCE_EXHAUSTED,
      Reason.RETENTION_LIMIT_EXCEEDED,
    );
    // The first lease ends 50 s from now; then the second cache fits.
    expect(refused.retryDelayMs).toBe(50_000);
    let fetched = 0;
    for await (const event of device.fetchKv({ kvHandle: first.kvHandle })) {
      if (event.type === "chunk") fetched += event.chunk.data.byteLength;
    }
    expect(fetched).toBe(cacheBytes);
    // A prefill without retention is not held to the budget.
    await collectPrefill(device.prefill(request()));
    clock += 50_000;
    await collectPrefill(device.prefill(request({ retentionSeconds: 60 })));
    await Promise.all([probe.close(), device.close()]);
  });
});

describe("unloading a model (MD-17, MD-18)", () => {
  it("fails a prefill still queued for its slot with MODEL_NOT_LOADED; an accepted one runs to its end", async () => {
    const device = createMockDevice({
      models: ["opal-tiny"],
      limits: { maxConcurrentPrefills: 1 },
    });
    const first = device.prefill(request())[Symbol.asyncIterator]();
    expect((await first.next()).value?.type).toBe("accepted");
    const queued = collectPrefill(device.prefill(request()));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await device.unloadModel("opal-tiny")).toEqual({ wasLoaded: true });
    let last: string | undefined;
    for (let next = await first.next(); !next.done; next = await first.next())
      last = next.value.type;
    expect(last).toBe("completed");
    await expectOpalError(queued, Code.FAILED_PRECONDITION, Reason.MODEL_NOT_LOADED);
    await device.close();
  });

  it("drops the model's prefix-cache entries: the same weights loaded again start cold", async () => {
    const device = createMockDevice({ models: [] });
    const { configJson, safetensors } = encodeHfCheckpoint(createPresetWeights("opal-tiny"), {
      dtype: "bf16",
    });
    const load = () =>
      device.loadModel({
        modelId: "uploaded-tiny",
        configJson,
        weightsByteLength: safetensors.byteLength,
        weights: (async function* () {
          yield safetensors;
        })(),
      });
    const prompt = Uint32Array.from({ length: 48 }, (_, i) => (i * 5) % 200);
    const hits = async () =>
      (
        await collectPrefill(
          device.prefill(request({ modelId: "uploaded-tiny", promptTokenIds: prompt })),
        )
      ).stats.prefixCacheHitTokens;
    await load();
    expect(await hits()).toBe(0);
    expect(await hits()).toBeGreaterThan(0);
    await device.unloadModel("uploaded-tiny");
    await load();
    expect(await hits()).toBe(0);
    await device.close();
  });
});

describe("the mock's KV conversion (PF-22)", () => {
  it("saturates fp8 without scales: large keys become ±max, never NaN", async () => {
    const weights = createPresetWeights("opal-tiny");
    // Keys far beyond fp8 range: every K projection weight times 10^6.
    for (const layer of weights.layers)
      for (let i = 0; i < layer.kProj.length; i++) layer.kProj[i]! *= 1e6;
    const model = createReferenceMockModel("huge-keys", weights);
    const tokens = Uint32Array.from({ length: 16 }, (_, i) => (i * 3) % 200);
    for (const [dtype, max] of [
      ["fp8_e4m3fn", 448],
      ["fp8_e5m2", 57344],
    ] as const) {
      const descriptor = {
        modelFingerprint: model.info.fingerprint,
        numLayers: model.info.numLayers,
        attention: model.info.attention,
        headRange: { start: 0, count: (model.info.attention as { numKvHeads: number }).numKvHeads },
        dtype,
        scaleScheme: "none",
        layout: "nhd",
        tokenStart: 0,
        tokenCount: tokens.length,
        blockSizeTokens: 16,
        numerics: mockProfile("instant").numerics,
      } as const;
      const { cache } = model.prefill(tokens, descriptor, () => 0, new AbortController().signal);
      const keys = toFloat32(cache.part(0, "k"), dtype);
      expect(keys.some(Number.isNaN), dtype).toBe(false);
      expect(Math.max(...keys.map(Math.abs)), dtype).toBe(max);
    }
  });
});

describe("request identity (PF-5..7) with the body digest the server host passes", () => {
  it("replays a retained request for the same digest and refuses another (a push target the host stripped)", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    const retained = request({ retentionSeconds: 60 });
    const first = await collectPrefill(device.prefill(retained, { bodyDigest: "push-to-a" }));
    const replay = await collectPrefill(device.prefill(retained, { bodyDigest: "push-to-a" }));
    expect(replay.kvHandle).toBe(first.kvHandle);
    await expectOpalError(
      collectPrefill(device.prefill(retained, { bodyDigest: "push-to-b" })),
      Code.ALREADY_EXISTS,
      Reason.REQUEST_ID_CONFLICT,
    );
    await device.close();
  });
});
