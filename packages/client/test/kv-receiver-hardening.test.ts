import { Code, type OpalError } from "@opal/core";
import { layerByteLength } from "@opal/kv";
import { type MockServer, serveMockDevice } from "@opal/mock";
import {
  collectPrefill,
  expectOpalError,
  openPush,
  type PushRequest,
  toPushMessages,
} from "@opal/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDeviceClient, type DeviceClient } from "../src/device-client/create-device-client";
import { createKvReceiver } from "../src/kv-receiver/create-kv-receiver";
import type { KvReceiver, KvReceiverOptions } from "../src/kv-receiver/kv-receiver-options";
import { pushPrefill } from "../src/prefill/push-prefill";
import type { KvSink } from "../src/sinks/kv-sink";
import { createMemorySink } from "../src/sinks/memory-sink";
import { tinyRequest } from "./reliability/fixtures";

// Issue #18 item 4: one sender must not be able to stop a KvReceiver for the others, and a
// transfer id is single-use (docs/protocol/push.md PS-9, PS-13).

let mock: MockServer;
let device: DeviceClient;
const receivers: KvReceiver<unknown>[] = [];
beforeAll(async () => {
  mock = await serveMockDevice({ models: ["opal-tiny"] });
  device = createDeviceClient(mock.address);
});
afterAll(async () => {
  await device.close();
  await Promise.all(receivers.map((r) => r.close()));
  await mock.close({ graceMs: 0 });
});

async function receiver<T>(options: KvReceiverOptions<T>): Promise<KvReceiver<T>> {
  const started = await createKvReceiver(options);
  receivers.push(started as KvReceiver<unknown>);
  return started;
}

/** A sink that takes every layer and keeps nothing (one layer buffered by the receiver). */
function discardingSink(commits: string[], transferId: string): KvSink<null> {
  return {
    open() {},
    writeLayer() {},
    commit() {
      commits.push(transferId);
      return null;
    },
    abort() {},
  };
}

/** A real cache from the mock device as the messages of a push: header, chunks, commit. */
async function pushMessages(transferId: string, seed: number, requestId = "r-1") {
  const prefill = await collectPrefill(device.prefill(tinyRequest({}, { seed })));
  return toPushMessages(prefill, transferId, requestId);
}

/** Sends `messages` on one call and ends it. */
function push(address: string, messages: readonly PushRequest[], token?: string) {
  const { call, result } = openPush(address, token);
  for (const m of messages) call.write(m);
  call.end();
  return result;
}

const reasonOf = (outcome: { error?: OpalError }) => ({
  code: outcome.error?.code,
  reason: outcome.error?.reason,
});

describe("KvReceiver under trickling senders (PS-9)", () => {
  it("empty messages do not keep a push alive: idle means no KV bytes", async () => {
    const r = await receiver({ idleTimeoutMs: 400, createSink: () => createMemorySink() });
    const { header } = await pushMessages("empty-trickle", 1);
    const { call, result } = openPush(r.address);
    call.write(header);
    const trickle = setInterval(() => call.write({}), 50);
    const started = performance.now();
    try {
      const outcome = await result;
      expect(reasonOf(outcome)).toEqual({
        code: Code.DEADLINE_EXCEEDED,
        reason: "DEADLINE_EXCEEDED",
      });
      expect(outcome.error?.message).toMatch(/sent no KV bytes for 400 ms/);
      expect(performance.now() - started).toBeLessThan(3_000);
    } finally {
      clearInterval(trickle);
    }
  });

  it("a second sender's real push succeeds while 16 trickling pushers of one sender are active", async () => {
    const commits: string[] = [];
    const r = await receiver({
      tokens: ["device-a", "device-b"],
      createSink: ({ transferId }) => discardingSink(commits, transferId),
    });
    // 16 pushers with device-a's token each send a real chunk every 500 ms: progress, but slow.
    const tricklers = await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        const { header, chunks } = await pushMessages(`trickle-${i}`, 1);
        const { call, result } = openPush(r.address, "device-a");
        call.write(header);
        let next = 0;
        const timer = setInterval(() => call.write(chunks[next++ % chunks.length]!), 500);
        return { call, result, timer };
      }),
    );
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      // One sender holds at most half the slots (maxTransfersPerSender defaults to 8 of 16).
      const refused = await Promise.all(
        tricklers.map((t) =>
          Promise.race([t.result, new Promise((resolve) => setTimeout(resolve, 200, "open"))]),
        ),
      );
      const busy = refused.filter((o) => o !== "open");
      expect(busy).toHaveLength(8);
      for (const o of busy)
        expect(reasonOf(o as { error?: OpalError })).toEqual({
          code: Code.RESOURCE_EXHAUSTED,
          reason: "DEVICE_BUSY",
        });
      // A real device pushing with device-b's token gets in and commits.
      const outcome = await pushPrefill(
        device,
        tinyRequest({
          pushTarget: { address: r.address, transferId: "real", authorizationToken: "device-b" },
        }),
        { retry: { maxAttempts: 1 } },
      );
      expect(outcome.receipt.committed).toBe(true);
      expect(commits).toEqual(["real"]);
    } finally {
      for (const t of tricklers) {
        clearInterval(t.timer);
        t.call.cancel();
      }
    }
  });

  it("bounds bytes buffered per sender and in total, before buffering", async () => {
    const { header, chunks, commit, descriptor } = await pushMessages("b-1", 2);
    const layer = layerByteLength(descriptor);
    const commits: string[] = [];
    const r = await receiver({
      tokens: ["device-a", "device-b"],
      maxBufferedBytes: 2 * layer,
      maxBufferedBytesPerSender: layer,
      createSink: ({ transferId }) => discardingSink(commits, transferId),
    });
    // device-a's first push holds its one layer of budget; its second is refused (retry later).
    const first = openPush(r.address, "device-a");
    first.call.write(header);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const second = await push(
      r.address,
      [{ header: { ...header.header, transferId: "b-2" } }],
      "device-a",
    );
    expect(reasonOf(second)).toEqual({ code: Code.RESOURCE_EXHAUSTED, reason: "DEVICE_BUSY" });
    expect(second.error?.retryDelayMs).toBeGreaterThan(0);
    // device-b has its own budget.
    const other = await push(
      r.address,
      [{ header: { ...header.header, transferId: "b-3" } }, ...chunks, commit],
      "device-b",
    );
    expect(other.response?.committed).toBe(true);
    for (const c of chunks) first.call.write(c);
    first.call.write(commit);
    first.call.end();
    expect((await first.result).response?.committed).toBe(true);
    expect(commits.sort()).toEqual(["b-1", "b-3"]);

    // A sink that keeps every layer (the memory sink) needs the whole cache buffered: more than
    // this receiver allows a sender, refused at the header without a retry delay, sink never opened.
    let opened = 0;
    const small = await receiver({
      maxBufferedBytes: 2 * layer - 1,
      createSink: () => {
        const sink = createMemorySink();
        return {
          ...sink,
          open(d) {
            opened++;
            return sink.open(d);
          },
        };
      },
    });
    const whole = await push(small.address, [header, ...chunks, commit]);
    expect(reasonOf(whole)).toEqual({ code: Code.RESOURCE_EXHAUSTED, reason: "DEVICE_BUSY" });
    expect(whole.error?.retryDelayMs).toBeUndefined();
    expect(opened).toBe(0);
  });
});

describe("KvReceiver transfer ids are single-use (PS-13)", () => {
  it("two concurrent pushes with one transfer id and different caches: one commits, the other fails", async () => {
    const commits: string[] = [];
    const r = await receiver({
      createSink: ({ transferId }) => discardingSink(commits, transferId),
    });
    const x = await pushMessages("same", 3);
    const y = await pushMessages("same", 4);
    const first = openPush(r.address);
    first.call.write(x.header);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const second = await push(r.address, [y.header, ...y.chunks, y.commit]);
    expect(reasonOf(second)).toEqual({ code: Code.ABORTED, reason: "PUSH_REJECTED" });
    for (const c of x.chunks) first.call.write(c);
    first.call.write(x.commit);
    first.call.end();
    expect((await first.result).response?.committed).toBe(true);
    expect(commits).toEqual(["same"]);
  });

  it("after a commit, a push with the same id and another digest, or no chunks, fails; the same cache is acknowledged", async () => {
    const received: string[] = [];
    const r = await receiver({
      createSink: ({ transferId }) => discardingSink(received, transferId),
    });
    const x = await pushMessages("done", 5);
    const done = await push(r.address, [x.header, ...x.chunks, x.commit]);
    expect(done.response?.committed).toBe(true);
    // Same request id and descriptor (same prompt length), another prompt: another digest.
    const other = await pushMessages("done", 6);
    expect(other.descriptor).toEqual(x.descriptor);
    const forged = await push(r.address, [other.header, ...other.chunks, other.commit]);
    expect(reasonOf(forged)).toEqual({ code: Code.ABORTED, reason: "PUSH_REJECTED" });
    // The committed digest with no chunks is not the cache.
    const empty = await push(r.address, [x.header, x.commit]);
    expect(reasonOf(empty)).toEqual({ code: Code.DATA_LOSS, reason: "STREAM_INCOMPLETE" });
    const headerOnly = await push(r.address, [x.header]);
    expect(headerOnly.error?.code).toBe(Code.DATA_LOSS);
    // The same cache again (a device retrying its push) gets the earlier cache id, no second commit.
    const again = await push(r.address, [x.header, ...x.chunks, x.commit]);
    expect(again.response).toMatchObject({ committed: true, cacheId: done.response?.cacheId });
    expect(received).toEqual(["done"]);
    await expectOpalError(
      Promise.resolve(
        createKvReceiver({ maxBufferedBytes: 0, createSink: () => createMemorySink() }),
      ),
      Code.INVALID_ARGUMENT,
      "INVALID_FIELD",
    );
  });
});
