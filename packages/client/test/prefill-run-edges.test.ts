import { Readable } from "node:stream";
import { Code, OpalError, Reason } from "@opal/core";
import type { PrefillRequest } from "@opal/driver";
import type { KvLayerParts } from "@opal/kv";
import { type MockServer, serveMockDevice } from "@opal/mock";
import { expectOpalError } from "@opal/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDeviceClient, type DeviceClient } from "../src/device-client/create-device-client";
import type { LayerReady } from "../src/prefill/prefill-run";
import { pushPrefill } from "../src/prefill/push-prefill";
import { startPrefill } from "../src/prefill/start-prefill";
import type { KvSink } from "../src/sinks/kv-sink";

let n = 0;
// Llama-3-8B's shape, 16 tokens, bf16: 32 layers of 32 KiB parts, in 4 KiB chunks.
const request = (patch: Partial<PrefillRequest> = {}): PrefillRequest => ({
  requestId: `edges-${process.pid}-${++n}`,
  modelId: "llama-3-8b",
  promptTokenIds: Uint32Array.from({ length: 16 }, (_, i) => (i * 13 + n) % 1000),
  kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  maxChunkBytes: 4096,
  ...patch,
});

/** A sink that copies what it is given, with `patch` replacing any of its calls. */
function copyingSink(patch: Partial<KvSink<string>> = {}) {
  const calls: string[] = [];
  const layers: KvLayerParts["parts"][] = [];
  const sink: KvSink<string> = {
    open() {
      calls.push("open");
    },
    writeLayer(layer) {
      calls.push(`layer ${layer.layer}`);
      layers.push({ k: layer.parts.k!.slice(), v: layer.parts.v!.slice() });
    },
    commit: () => "committed",
    abort() {
      calls.push("abort");
    },
    ...patch,
  };
  return { sink, calls, layers };
}

const never = () => new Promise<never>(() => {});

describe("startPrefill at its edges, over gRPC", () => {
  let served: MockServer;
  let device: DeviceClient;
  beforeAll(async () => {
    served = await serveMockDevice({ models: ["llama-3-8b"] }, { port: 0 });
    device = createDeviceClient(served.address);
  });
  afterAll(async () => {
    await device.close();
    await served.close({ graceMs: 0 });
  });

  it.each([
    ["open", { open: never }],
    ["writeLayer", { writeLayer: never }],
    ["commit", { commit: never }],
  ] as const)("the deadline ends a run whose sink's %s never returns", async (_name, patch) => {
    const { sink } = copyingSink(patch);
    const started = performance.now();
    await expectOpalError(
      startPrefill(device, request(), { sink: () => sink, timeoutMs: 300 }).result,
      Code.DEADLINE_EXCEEDED,
    );
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it("aborts a sink the caller's signal left stuck in writeLayer once that call returns", async () => {
    let release = () => {};
    const stuck = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { sink, calls } = copyingSink({
      writeLayer(layer) {
        calls.push(`layer ${layer.layer}`);
        return stuck;
      },
    });
    const controller = new AbortController();
    const run = startPrefill(device, request(), { sink: () => sink, signal: controller.signal });
    while (!calls.includes("layer 0")) await new Promise((resolve) => setTimeout(resolve, 5));
    controller.abort();
    await expectOpalError(run.result, Code.CANCELLED);
    expect(calls).toEqual(["open", "layer 0"]);
    release();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(calls).toEqual(["open", "layer 0", "abort"]);
  });

  it("never resumes past a layer its sink failed to take: the attempt is retried with a fresh sink", async () => {
    const made: ReturnType<typeof copyingSink>[] = [];
    const sink = () => {
      const first = made.length === 0;
      const attempt = copyingSink({
        writeLayer(layer) {
          attempt.calls.push(`layer ${layer.layer}`);
          if (first && layer.layer === 3)
            throw new OpalError(Code.RESOURCE_EXHAUSTED, "no space left for layer 3");
          attempt.layers.push({ k: layer.parts.k!.slice() });
        },
      });
      made.push(attempt);
      return attempt.sink;
    };
    const outcome = await startPrefill(device, request({ retentionSeconds: 30 }), {
      sink,
      retry: { initialBackoffMs: 1 },
    }).result;
    expect([outcome.transfer.attempts, outcome.transfer.resumes]).toEqual([2, 0]);
    expect(made).toHaveLength(2);
    expect(made[0]!.calls).toEqual(["open", "layer 0", "layer 1", "layer 2", "layer 3", "abort"]);
    expect(made[1]!.layers).toHaveLength(32);
  });

  it("a sink factory that throws fails the run with an OpalError, without retrying", async () => {
    let made = 0;
    const error = await expectOpalError(
      startPrefill(device, request(), {
        sink: () => {
          made++;
          throw new TypeError("no pool for this request");
        },
      }).result,
      Code.UNKNOWN,
    );
    expect(error.rawMessage).toBe("no pool for this request");
    expect(made).toBe(1);
  });

  it("taking the iterator without calling next() (as Readable.from does) does not hold the run", async () => {
    const run = startPrefill(device, request(), { timeoutMs: 10_000 });
    const readable = Readable.from(run);
    const outcome = await run.result;
    expect(outcome.descriptor.numLayers).toBe(32);
    readable.destroy();
  });

  it("layers a consumer starts iterating late stay valid with a sink that copies", async () => {
    let firstWritten = () => {};
    const written = new Promise<void>((resolve) => {
      firstWritten = resolve;
    });
    const { sink, layers } = copyingSink({
      writeLayer(layer) {
        layers.push({ k: layer.parts.k!.slice(), v: layer.parts.v!.slice() });
        firstWritten();
      },
    });
    const run = startPrefill(device, request(), { sink: () => sink });
    await written;
    const seen: LayerReady[] = [];
    for await (const layer of run) seen.push(layer);
    await run.result;
    expect(seen.length).toBeGreaterThan(1);
    const differing = seen.filter(
      ({ layer, parts }) =>
        !Buffer.from(parts.k!).equals(layers[layer]!.k!) ||
        !Buffer.from(parts.v!).equals(layers[layer]!.v!),
    );
    expect(differing.map((l) => l.layer)).toEqual([]);
  });

  it.each([
    ["maxAttempts", { maxAttempts: Number.NaN }],
    ["maxAttempts", { maxAttempts: 0 }],
    ["initialBackoffMs", { initialBackoffMs: -1 }],
    ["maxBackoffMs", { maxBackoffMs: Number.POSITIVE_INFINITY }],
  ] as const)("refuses retry.%s of %o, naming it", async (field, retry) => {
    let thrown: unknown;
    try {
      startPrefill(device, request(), { retry });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(OpalError);
    expect((thrown as OpalError).code).toBe(Code.INVALID_ARGUMENT);
    expect((thrown as OpalError).reason).toBe(Reason.INVALID_FIELD);
    expect((thrown as OpalError).fieldViolations[0]?.field).toBe(`retry.${field}`);
    const pushed = await expectOpalError(
      pushPrefill(
        device,
        request({
          pushTarget: { address: "127.0.0.1:1", transferId: "t", authorizationToken: "" },
        }),
        { retry },
      ),
      Code.INVALID_ARGUMENT,
      Reason.INVALID_FIELD,
    );
    expect(pushed.fieldViolations[0]?.field).toBe(`retry.${field}`);
  });
});
