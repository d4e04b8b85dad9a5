import { Code } from "@opal/core";
import type { PrefillRequest } from "@opal/driver";
import { digestKvCache, type KvCache } from "@opal/kv";
import { serveMockDevice } from "@opal/mock";
import { expectOpalError } from "@opal/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDeviceClient, type DeviceClient } from "../src/device-client/create-device-client";
import { createKvReceiver } from "../src/kv-receiver/create-kv-receiver";
import type { KvReceiver } from "../src/kv-receiver/kv-receiver-options";
import { pushPrefill } from "../src/prefill/push-prefill";
import type { KvSink } from "../src/sinks/kv-sink";
import { createMemorySink } from "../src/sinks/memory-sink";

let mock: Awaited<ReturnType<typeof serveMockDevice>>;
let device: DeviceClient;
let receiver: KvReceiver<KvCache>;
const sinkEvents: string[] = [];
let n = 0;

beforeAll(async () => {
  mock = await serveMockDevice({ models: ["opal-tiny"] });
  device = createDeviceClient(mock.address);
  receiver = await createKvReceiver({
    tokens: ["receiver-secret"],
    createSink: ({ transferId }) => {
      const inner = createMemorySink();
      const sink: KvSink<KvCache> = {
        open: (d) => {
          sinkEvents.push(`open ${transferId}`);
          return inner.open(d);
        },
        writeLayer: (l) => inner.writeLayer(l),
        commit: (s) => {
          sinkEvents.push(`commit ${transferId}`);
          return inner.commit(s);
        },
        abort: (r) => {
          sinkEvents.push(`abort ${transferId}`);
          return inner.abort(r);
        },
      };
      return sink;
    },
  });
});
afterAll(async () => {
  await device.close();
  await receiver.close();
  await mock.close({ graceMs: 100 });
});

const request = (transferId: string, patch: Partial<PrefillRequest> = {}): PrefillRequest => ({
  requestId: `push-${++n}`,
  modelId: "opal-tiny",
  promptTokenIds: Uint32Array.from({ length: 40 }, (_, i) => (i * 3) % 200),
  kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  maxChunkBytes: 512,
  pushTarget: { address: receiver.address, transferId, authorizationToken: "receiver-secret" },
  ...patch,
});

describe("push handoff: device → KvReceiver", () => {
  it("declares push (the server host pushes for drivers that do not)", async () => {
    expect((await device.getCapabilities()).features.push).toBe(true);
  });

  it("streams the cache straight to the receiver, which commits it atomically after verifying it", async () => {
    const progress: number[] = [];
    const outcome = await pushPrefill(device, request("t-1"), {
      onProgress: (layers) => progress.push(layers),
    });
    expect(progress).toEqual([1, 2]);
    expect(outcome.receipt.committed).toBe(true);
    const received = await receiver.received("t-1", { timeoutMs: 2_000 });
    expect(received.cacheId).toBe(outcome.receipt.cacheId);
    expect(received.firstTokenId).toBe(outcome.stats.firstTokenId);
    expect(Buffer.from(digestKvCache(received.receipt))).toEqual(
      Buffer.from(outcome.stats.kvDigest),
    );
  });

  it("commits nothing when a chunk is corrupted on the way, and the device reports the rejection", async () => {
    mock.device.setFaults({ corruptChunk: 2 });
    try {
      await expectOpalError(
        pushPrefill(device, request("t-bad"), { retry: { maxAttempts: 1 } }),
        Code.ABORTED,
        "PUSH_REJECTED",
      );
    } finally {
      mock.device.setFaults({});
    }
    expect(sinkEvents).toContain("abort t-bad");
    expect(sinkEvents).not.toContain("commit t-bad");
    await expectOpalError(receiver.received("t-bad", { timeoutMs: 100 }), Code.DEADLINE_EXCEEDED);
  });

  it("commits nothing when the device's stream breaks mid-push", async () => {
    mock.device.setFaults({ abortAfterChunks: 3 });
    try {
      await expectOpalError(
        pushPrefill(device, request("t-broken"), { retry: { maxAttempts: 1 } }),
        Code.UNAVAILABLE,
      );
    } finally {
      mock.device.setFaults({});
    }
    // Whether the header reached the receiver before the cancel or not, nothing becomes visible.
    await expectOpalError(
      receiver.received("t-broken", { timeoutMs: 300 }),
      Code.DEADLINE_EXCEEDED,
    );
    expect(sinkEvents).not.toContain("commit t-broken");
    if (sinkEvents.includes("open t-broken")) expect(sinkEvents).toContain("abort t-broken");
  });

  it("acknowledges a repeated transfer id without committing twice", async () => {
    // A device retrying a push sends the same request (and so the same cache) under the same id.
    const retried = request("t-dup");
    const first = await pushPrefill(device, retried);
    const again = await pushPrefill(device, retried);
    expect(again.receipt.cacheId).toBe(first.receipt.cacheId);
    expect(sinkEvents.filter((e) => e === "commit t-dup")).toHaveLength(1);
  });

  it("refuses another cache under a transfer id already committed", async () => {
    await pushPrefill(device, request("t-taken"));
    await expectOpalError(
      pushPrefill(device, request("t-taken", { promptTokenIds: Uint32Array.of(1, 2, 3) }), {
        retry: { maxAttempts: 1 },
      }),
      Code.ABORTED,
      "PUSH_REJECTED",
    );
  });

  it("refuses a device without the receiver's token", async () => {
    const bad = request("t-token", {
      pushTarget: { address: receiver.address, transferId: "t-token", authorizationToken: "wrong" },
    });
    await expectOpalError(
      pushPrefill(device, bad, { retry: { maxAttempts: 1 } }),
      Code.ABORTED,
      "PUSH_REJECTED",
    );
  });

  it("reports an unreachable receiver as UNAVAILABLE PUSH_TARGET_UNREACHABLE", async () => {
    const gone = request("t-gone", {
      pushTarget: { address: "127.0.0.1:1", transferId: "t-gone" },
    });
    await expectOpalError(
      pushPrefill(device, gone, { retry: { maxAttempts: 1 } }),
      Code.UNAVAILABLE,
      "PUSH_TARGET_UNREACHABLE",
    );
  });
});
