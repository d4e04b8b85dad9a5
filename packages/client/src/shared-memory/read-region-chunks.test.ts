import { Code } from "@opal/core";
import { cacheByteLength } from "@opal/kv";
import { opal, toWireDescriptor } from "@opal/protocol";
import { expectOpalError } from "@opal/testing";
import { describe, expect, it } from "vitest";
import { mhaDescriptor } from "../../../kv/test/fixtures";
import { readRegionChunks } from "./read-region-chunks";
import type { SharedMemoryRegion } from "./shared-memory-regions";

type Message = opal.device.v1.PrefillResponse;
const descriptor = mhaDescriptor({ dtype: "bf16" });
const total = cacheByteLength(descriptor);

/**
 * A region whose byte at offset `i` is `i & 0xff`, counting reads in flight. A read takes
 * `latencyMs(offset)`; `failAt` makes the read at that offset fail.
 */
function fakeRegion(latencyMs: (offset: number) => number = () => 5, failAt = -1) {
  const state = { inFlight: 0, reads: 0, maxInFlight: 0 };
  const region: SharedMemoryRegion = {
    name: "/opal-fake",
    lengthBytes: total,
    async readInto(target, offsetBytes) {
      state.inFlight++;
      state.reads++;
      state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
      try {
        await new Promise((resolve) => setTimeout(resolve, latencyMs(offsetBytes)));
        if (offsetBytes === failAt) throw new Error("EIO: i/o error");
        for (let i = 0; i < target.byteLength; i++) target[i] = (offsetBytes + i) & 0xff;
      } finally {
        state.inFlight--;
      }
    },
  };
  return { region, state };
}

const completedMessage = (): Message =>
  opal.device.v1.PrefillResponse.create({ completed: { kvTotalBytes: total } });

const accepted = (): Message =>
  opal.device.v1.PrefillResponse.create({
    accepted: { kvHandle: "h", descriptor: toWireDescriptor(descriptor) },
  });
const chunk = (offsetBytes: number, lengthBytes: number, data?: Uint8Array): Message =>
  opal.device.v1.PrefillResponse.create({
    chunk: {
      layer: 0,
      part: opal.device.v1.KvPart.KV_PART_K,
      dataRef: { offsetBytes, lengthBytes },
      ...(data ? { data } : {}),
    },
  });

/** Messages given one by one by the test; `end` closes the stream. */
function controlledMessages() {
  const pending: Message[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  const cancelled = { value: false };
  async function* messages(): AsyncGenerator<Message> {
    for (;;) {
      while (pending.length === 0 && !ended && !cancelled.value) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
      if (cancelled.value) throw new Error("cancelled");
      if (pending.length === 0) return;
      yield pending.shift()!;
    }
  }
  return {
    messages: messages(),
    send(...m: Message[]) {
      pending.push(...m);
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
    cancel() {
      cancelled.value = true;
      wake?.();
    },
    cancelled,
  };
}

/** Reads the whole stream `messages` through `region` to its end. */
async function readAll(region: SharedMemoryRegion, messages: Message[]): Promise<void> {
  const control = controlledMessages();
  control.send(...messages);
  control.end();
  const hooks = { onCompleted: () => {}, cancel: control.cancel };
  for await (const _ of readRegionChunks(control.messages, region, hooks));
}

describe("readRegionChunks", () => {
  it("yields a chunk as soon as its bytes are read, without waiting for later messages", async () => {
    const { region } = fakeRegion();
    const control = controlledMessages();
    const events = readRegionChunks(control.messages, region, {
      onCompleted: () => {},
      cancel: control.cancel,
    });
    control.send(accepted(), chunk(0, 100));
    expect((await events.next()).value?.type).toBe("accepted");
    const first = await events.next();
    expect(first.value?.type).toBe("chunk");
    const data = (first.value as { chunk: { data: Uint8Array } }).chunk.data;
    expect([...data.subarray(0, 3)]).toEqual([0, 1, 2]);
    // The caller stops early: the stream is cancelled and nothing is left reading.
    await events.return(undefined);
    expect(control.cancelled.value).toBe(true);
  });

  it("yields in stream order when later reads finish first, at most four in flight", async () => {
    // The first reads are the slowest: completion order is the reverse of stream order.
    const { region, state } = fakeRegion((offset) => 30 - offset / 10);
    const control = controlledMessages();
    let completed = false;
    const events = readRegionChunks(control.messages, region, {
      onCompleted: () => {
        completed = true;
      },
      cancel: control.cancel,
    });
    control.send(accepted(), ...[0, 1, 2, 3, 4, 5, 6, 7].map((i) => chunk(i * 10, 10)));
    control.send(completedMessage());
    control.end();
    const seen: (number | string)[] = [];
    for await (const event of events) {
      seen.push(event.type === "chunk" ? event.chunk.data[0]! : event.type);
    }
    expect(seen).toEqual(["accepted", 0, 10, 20, 30, 40, 50, 60, 70, "completed"]);
    expect(state.maxInFlight).toBe(4);
    expect(completed).toBe(true);
  });

  it("reads a copying caller's chunks into small slabs and a keeping caller's into one", async () => {
    // 3 layers x K,V x 2 MiB = 12 MiB, in 2 MiB chunks.
    const big = mhaDescriptor({ tokenCount: 16_384 });
    const part = 2 * 1024 * 1024;
    const region: SharedMemoryRegion = {
      name: "/opal-fake",
      lengthBytes: cacheByteLength(big),
      readInto: async () => {},
    };
    const buffersOf = async (keepsChunks: boolean) => {
      const control = controlledMessages();
      control.send(
        opal.device.v1.PrefillResponse.create({
          accepted: { kvHandle: "h", descriptor: toWireDescriptor(big) },
        }),
        ...[0, 1, 2, 3, 4, 5].map((i) => chunk(i * part, part)),
      );
      control.end();
      const buffers = new Set<ArrayBufferLike>();
      const events = readRegionChunks(control.messages, region, {
        onCompleted: () => {},
        cancel: control.cancel,
        keepsChunks,
      });
      for await (const event of events)
        if (event.type === "chunk") buffers.add(event.chunk.data.buffer);
      return buffers.size;
    };
    expect(await buffersOf(true)).toBe(1);
    expect(await buffersOf(false)).toBe(2); // 8 MiB slabs: four chunks, then two
  });

  it("fails DATA_LOSS when a read fails", async () => {
    const { region } = fakeRegion(() => 1, 20);
    const stream = [accepted(), chunk(0, 10), chunk(10, 10), chunk(20, 10)];
    await expectOpalError(readAll(region, stream), Code.DATA_LOSS, "STREAM_INCOMPLETE");
  });

  it("keeps order and waits for every read before it returns", async () => {
    const { region, state } = fakeRegion();
    const control = controlledMessages();
    const events = readRegionChunks(control.messages, region, {
      onCompleted: () => {},
      cancel: control.cancel,
    });
    control.send(accepted(), ...[0, 1, 2, 3, 4, 5].map((i) => chunk(i * 10, 10)));
    const offsets: number[] = [];
    await events.next();
    for (let i = 0; i < 3; i++) {
      const next = await events.next();
      offsets.push((next.value as { chunk: { data: Uint8Array } }).chunk.data[0]!);
    }
    expect(offsets).toEqual([0, 10, 20]);
    await events.return(undefined);
    expect(state.inFlight).toBe(0);
  });

  it.each([
    ["a reference that skips ahead", [chunk(10, 10)]],
    ["a chunk with inline data as well", [chunk(0, 4, Uint8Array.of(1, 2, 3, 4))]],
    ["a reference past the cache", [chunk(0, total + 1)]],
  ])("fails DATA_LOSS on %s", async (_what, bad) => {
    const { region } = fakeRegion();
    await expectOpalError(
      readAll(region, [accepted(), ...bad]),
      Code.DATA_LOSS,
      "STREAM_INCOMPLETE",
    );
  });
});
