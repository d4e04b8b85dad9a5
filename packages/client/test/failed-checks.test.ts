import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, OpalError, Reason } from "@opal/core";
import type { PrefillDriver, PrefillEvent, PrefillRequest } from "@opal/driver";
import { createMockDevice, type FaultConfig, type MockServer, serveMockDevice } from "@opal/mock";
import { expectOpalError } from "@opal/testing";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createDeviceClient, type DeviceClient } from "../src/device-client/create-device-client";
import { startPrefill } from "../src/prefill/start-prefill";
import type { KvSink } from "../src/sinks/kv-sink";
import { createOkvFileSink } from "../src/sinks/okv-file-sink";
import { tinyRequest } from "./reliability/fixtures";

// tinyRequest(): opal-tiny, 2 layers, 48 f32 tokens, 1 KiB chunks: 12 chunks per layer, 24 in all.
const CHUNKS_PER_LAYER = 12;

/** A sink factory that records every call the SDK makes, in order, and what abort was given. */
function recordingSink() {
  const calls: string[] = [];
  const abortReasons: unknown[] = [];
  let created = 0;
  const create = (): KvSink<string> => {
    created++;
    return {
      open: () => void calls.push("open"),
      writeLayer: (layer) => void calls.push(`layer ${layer.layer}`),
      commit: () => {
        calls.push("commit");
        return "committed";
      },
      abort: (reason) => {
        calls.push("abort");
        abortReasons.push(reason);
      },
    };
  };
  return {
    create,
    calls,
    abortReasons,
    get created() {
      return created;
    },
  };
}

const NO_RETRY = { maxAttempts: 1 } as const;

const servers: MockServer[] = [];
const clients: DeviceClient[] = [];
const dirs: string[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.close({ graceMs: 100 })));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

/** A mock served over gRPC on 127.0.0.1 with `faults`, and a client of it. */
async function servedMock(faults: FaultConfig) {
  const mock = await serveMockDevice({ models: ["opal-tiny"], faults });
  servers.push(mock);
  const client = createDeviceClient(mock.address);
  clients.push(client);
  return { mock, client };
}

/** An in-process mock whose prefill streams have their `completed` digest altered (CRCs stay valid). */
function wrongDigestDevice(): PrefillDriver {
  const mock = createMockDevice({ models: ["opal-tiny"] });
  return {
    ...mock,
    async *prefill(request, options) {
      for await (const event of mock.prefill(request, options)) {
        if (event.type !== "completed") {
          yield event;
          continue;
        }
        const kvDigest = Uint8Array.from(event.stats.kvDigest);
        kvDigest[kvDigest.length - 1]! ^= 0x80;
        yield { type: "completed", stats: { ...event.stats, kvDigest } } satisfies PrefillEvent;
      }
    },
  };
}

async function failedRun(device: PrefillDriver, request: PrefillRequest = tinyRequest()) {
  const sink = recordingSink();
  const result = startPrefill(device, request, { sink: sink.create, retry: NO_RETRY }).result;
  return { sink, result };
}

/** Asserts the sink was opened, never committed, and aborted exactly once with `error`. */
function expectAbortedOnce(sink: ReturnType<typeof recordingSink>, error: OpalError) {
  expect(sink.created).toBe(1);
  expect(sink.calls.filter((c) => c === "commit")).toEqual([]);
  expect(sink.calls.filter((c) => c === "abort")).toEqual(["abort"]);
  expect(sink.calls[0]).toBe("open");
  expect(sink.calls.at(-1)).toBe("abort");
  expect(sink.abortReasons).toEqual([error]);
  expect(sink.abortReasons[0]).toBe(error);
}

describe("a failed check never commits the sink (retries off)", () => {
  it("a corrupt chunk (over gRPC) rejects with DATA_LOSS CHECKSUM_MISMATCH and aborts the sink", async () => {
    // Chunk 15 is the 3rd of layer 1: layer 0 arrived verified, layer 1 never does.
    const { mock, client } = await servedMock({ corruptChunk: CHUNKS_PER_LAYER + 3 });
    const { sink, result } = await failedRun(client);
    const error = await expectOpalError(result, Code.DATA_LOSS, Reason.CHECKSUM_MISMATCH);
    expect(sink.calls).toEqual(["open", "layer 0", "abort"]);
    expectAbortedOnce(sink, error);
    expect(mock.device.stats.faultsInjected).toBe(1);
    expect(mock.device.stats.prefillsStarted).toBe(1);
  });

  it("a corrupt first chunk fails before any layer is written", async () => {
    const { client } = await servedMock({ corruptChunk: 1 });
    const { sink, result } = await failedRun(client);
    const error = await expectOpalError(result, Code.DATA_LOSS, Reason.CHECKSUM_MISMATCH);
    expect(sink.calls).toEqual(["open", "abort"]);
    expectAbortedOnce(sink, error);
  });

  it("a whole-cache digest that disagrees with the device's (valid CRCs) rejects with DATA_LOSS CHECKSUM_MISMATCH", async () => {
    // The mock has no wrong-digest fault: the device's `completed` is altered on its way out.
    const { sink, result } = await failedRun(wrongDigestDevice());
    const error = await expectOpalError(result, Code.DATA_LOSS, Reason.CHECKSUM_MISMATCH);
    expect(error.message).toMatch(/does not match the device's/);
    // Every layer was verified and written; only the final check failed.
    expect(sink.calls).toEqual(["open", "layer 0", "layer 1", "abort"]);
    expectAbortedOnce(sink, error);
  });

  it("a connection dropped mid-stream (served mock) rejects with UNAVAILABLE DEVICE_FAULT and aborts the sink", async () => {
    const { mock, client } = await servedMock({ dropConnectionAfterChunks: 3 });
    const { sink, result } = await failedRun(client);
    const error = await expectOpalError(result, Code.UNAVAILABLE, Reason.DEVICE_FAULT);
    expect(sink.calls).toEqual(["open", "abort"]);
    expectAbortedOnce(sink, error);
    expect(mock.device.stats.faultsInjected).toBe(1);
    expect(mock.device.stats.prefillsStarted).toBe(1);
  });

  it("a stream that breaks after a complete layer (in process) rejects with the device's UNAVAILABLE", async () => {
    const device = createMockDevice({
      models: ["opal-tiny"],
      faults: { dropConnectionAfterChunks: CHUNKS_PER_LAYER + 1 },
    });
    const { sink, result } = await failedRun(device);
    const error = await expectOpalError(result, Code.UNAVAILABLE, Reason.DEVICE_FAULT);
    expect(error.rawMessage).toBe("injected fault: connection dropped");
    expect(sink.calls).toEqual(["open", "layer 0", "abort"]);
    expectAbortedOnce(sink, error);
  });

  it("an .okv file sink leaves neither the file nor its partial file after a corrupt chunk", async () => {
    const dir = await mkdtemp(join(tmpdir(), "opal-failed-checks-"));
    dirs.push(dir);
    const path = join(dir, "cache.okv");
    const { client } = await servedMock({ corruptChunk: CHUNKS_PER_LAYER + 3 });
    // Watch the folder after layer 0 was written: the partial file exists then.
    const during: string[][] = [];
    const sink = () => {
      const inner = createOkvFileSink({ path });
      return {
        ...inner,
        open: (descriptor: Parameters<typeof inner.open>[0]) => inner.open(descriptor),
        async writeLayer(layer: Parameters<typeof inner.writeLayer>[0]) {
          await inner.writeLayer(layer);
          during.push(await readdir(dir));
        },
        commit: (stats: Parameters<typeof inner.commit>[0]) => inner.commit(stats),
        abort: (reason: unknown) => inner.abort(reason),
      };
    };
    await expectOpalError(
      startPrefill(client, tinyRequest(), { sink, retry: NO_RETRY }).result,
      Code.DATA_LOSS,
      Reason.CHECKSUM_MISMATCH,
    );
    expect(during).toHaveLength(1);
    expect(during[0]).toEqual([expect.stringMatching(/^cache\.okv\.partial-[0-9a-f]{12}$/)]);
    await expect(stat(path)).rejects.toMatchObject({ code: "ENOENT" });
    expect(await readdir(dir)).toEqual([]);
  });

  it("the same .okv sink commits the file when nothing is corrupt (control)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "opal-failed-checks-"));
    dirs.push(dir);
    const path = join(dir, "cache.okv");
    const { client } = await servedMock({});
    const outcome = await startPrefill(client, tinyRequest(), {
      sink: () => createOkvFileSink({ path }),
      retry: NO_RETRY,
    }).result;
    expect(outcome.receipt.path).toBe(path);
    expect((await stat(path)).size).toBe(outcome.receipt.byteLength);
    expect(await readdir(dir)).toEqual(["cache.okv"]);
  });
});

/**
 * Runs a prefill on `device` with a 200 ms deadline and retries that would wait 1 s or more;
 * expects DEADLINE_EXCEEDED at the deadline, not after the wait.
 */
async function expectDeadlineBeforeRetry(device: PrefillDriver) {
  const started = performance.now();
  const error = await expectOpalError(
    startPrefill(device, tinyRequest(), {
      retry: { initialBackoffMs: 1000, maxAttempts: 10 },
      timeoutMs: 200,
    }).result,
    Code.DEADLINE_EXCEEDED,
  );
  const elapsed = performance.now() - started;
  expect(elapsed).toBeGreaterThanOrEqual(190);
  expect(elapsed).toBeLessThan(900);
  return error;
}

describe("the deadline bounds retries", () => {
  it("rejects with DEADLINE_EXCEEDED during a long backoff instead of sleeping it out", async () => {
    // random() = 1: the backoff after attempt 1 is exactly initialBackoffMs (1,000 ms).
    vi.spyOn(Math, "random").mockReturnValue(1);
    const mock = createMockDevice({
      models: ["opal-tiny"],
      faults: { errors: { Prefill: { rate: 1 } } },
    });
    let attempts = 0;
    const device: PrefillDriver = {
      ...mock,
      prefill(request, options) {
        attempts++;
        return mock.prefill(request, options);
      },
    };
    const error = await expectDeadlineBeforeRetry(device);
    expect(error.rawMessage).toBe("deadline of 200 ms exceeded");
    expect(attempts).toBe(1);
    expect(mock.stats.faultsInjected).toBe(1);
  });

  it("honours a RetryInfo delay longer than the deadline by failing at the deadline", async () => {
    let attempts = 0;
    const mock = createMockDevice({ models: ["opal-tiny"] });
    const device: PrefillDriver = {
      ...mock,
      // biome-ignore lint/correctness/useYield: fails before yielding anything
      async *prefill() {
        attempts++;
        throw new OpalError(Code.UNAVAILABLE, "always down", {
          reason: Reason.DEVICE_FAULT,
          retryDelayMs: 1000,
        });
      },
    };
    await expectDeadlineBeforeRetry(device);
    expect(attempts).toBe(1);
  });
});
