import { Code, Reason } from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import { dtypeByteSize, fromSglangLayer, type KvDescriptor } from "@opal/kv";
import { expectOpalError } from "@opal/testing";
import { describe, expect, it } from "vitest";
import {
  coordinateCache,
  mhaDescriptor,
  mlaDescriptor,
  randomCache,
} from "../../../kv/test/fixtures";
import { createSglangSink, type SglangSinkOptions } from "./sglang-sink";

const stats = {} as PrefillStats;
const SENTINEL = 0xee;
const NUM_SLOTS = 64;

function buffersFor(d: KvDescriptor, patch: Partial<SglangSinkOptions> = {}): SglangSinkOptions {
  const mla = d.attention.kind === "mla";
  const headNum = mla ? 1 : d.headRange.count;
  const headDim =
    d.attention.kind === "mla" ? d.attention.latentDim + d.attention.ropeDim : d.attention.headDim;
  const bytes = NUM_SLOTS * headNum * headDim * dtypeByteSize(d.dtype);
  const make = () =>
    Array.from({ length: d.numLayers }, () => new Uint8Array(bytes).fill(SENTINEL));
  // Slots scattered over the pool, in reverse order, never slot 0.
  const slots = Int32Array.from({ length: d.tokenCount }, (_, i) => NUM_SLOTS - 1 - i);
  return {
    kBuffers: make(),
    vBuffers: mla ? undefined : make(),
    slots,
    dtype: d.dtype,
    headNum,
    headDim,
    attention: d.attention.kind,
    ...patch,
  };
}

describe("createSglangSink", () => {
  for (const d of [
    mhaDescriptor({ headRange: { start: 1, count: 2 } }),
    mhaDescriptor({ layout: "hnd", tokenStart: 7 }),
    mlaDescriptor(),
  ]) {
    it(`${d.attention.kind} ${d.layout}: every layer reads back from its slots; other slots untouched`, async () => {
      const cache = coordinateCache(d);
      const options = buffersFor(d);
      const sink = createSglangSink(options);
      await sink.open(d);
      for (let layer = 0; layer < d.numLayers; layer++) await sink.writeLayer(cache.layer(layer));
      expect(await sink.commit(stats)).toEqual({ tokens: 37, scales: [] });
      for (let layer = 0; layer < d.numLayers; layer++) {
        const back = fromSglangLayer(
          { kBuffer: options.kBuffers[layer] as Uint8Array, vBuffer: options.vBuffers?.[layer] },
          { slots: options.slots, descriptor: d },
        );
        for (const [part, bytes] of Object.entries(back))
          expect(Buffer.compare(bytes, cache.part(layer, part as "k"))).toBe(0);
        const k = options.kBuffers[layer] as Uint8Array;
        const slotBytes = k.byteLength / NUM_SLOTS;
        // Slots 0..26 are not ours.
        expect(k.subarray(0, 27 * slotBytes).every((b) => b === SENTINEL)).toBe(true);
      }
    });
  }

  it("abort zeroes the slots it wrote and nothing else", async () => {
    const d = mhaDescriptor({ dtype: "int8", scaleScheme: "per_head" });
    const cache = randomCache(d);
    const options = buffersFor(d);
    const sink = createSglangSink(options);
    await sink.open(d);
    await sink.writeLayer(cache.layer(0));
    await sink.writeLayer(cache.layer(1));
    await sink.abort(new Error("stream failed"));
    const slotBytes = 4 * 8;
    for (const list of [options.kBuffers, options.vBuffers ?? []]) {
      list.forEach((buffer, layer) => {
        expect(buffer.subarray(0, 27 * slotBytes).every((b) => b === SENTINEL)).toBe(true);
        const ours = buffer.subarray(27 * slotBytes);
        expect(ours.every((b) => b === (layer < 2 ? 0 : SENTINEL))).toBe(true);
      });
    }
    await expectOpalError(Promise.resolve(sink.commit(stats)), Code.CANCELLED);
  });

  it("returns the scale parts of a quantised cache", async () => {
    const d = mhaDescriptor({ dtype: "fp8_e5m2", scaleScheme: "per_token" });
    const cache = randomCache(d);
    const sink = createSglangSink(buffersFor(d));
    await sink.open(d);
    for (let layer = 0; layer < 3; layer++) await sink.writeLayer(cache.layer(layer));
    const { scales } = await sink.commit(stats);
    expect(Buffer.compare(scales[1]?.k_scale as Uint8Array, cache.part(1, "k_scale"))).toBe(0);
  });

  it("rejects a mismatched descriptor at open, naming both sides", async () => {
    const d = mhaDescriptor();
    const cases: [Partial<SglangSinkOptions>, SglangSinkOptions | undefined, string][] = [
      [{}, buffersFor({ ...d, dtype: "bf16" }), "dtype: the buffers hold bf16, the cache is f32"],
      [
        {},
        buffersFor({ ...d, headRange: { start: 0, count: 2 } }),
        "head_num: the buffers hold 2 heads, the cache carries 4 (heads 0..3)",
      ],
      [{ slots: [1, 2, 3] }, undefined, "tokens: 3 slots were given, the cache holds 37 tokens"],
      [
        {},
        buffersFor({ ...d, numLayers: 2 }),
        "layers: 2 layer buffers were given, the cache has 3 layers",
      ],
    ];
    for (const [patch, given, message] of cases) {
      const options = given ?? buffersFor(d, patch);
      const error = await expectOpalError(
        Promise.resolve(createSglangSink(options).open(d)),
        Code.FAILED_PRECONDITION,
        Reason.DESCRIPTOR_MISMATCH,
      );
      expect(error.message).toBe(`[failed_precondition] ${message}`);
    }
  });

  it("rejects bad options with INVALID_ARGUMENT naming expected vs actual", () => {
    const d = mhaDescriptor();
    expect(() => createSglangSink(buffersFor(d, { slots: [0, 5] }))).toThrow(
      "[invalid_argument] slots[0]: expected a slot in [1, 64) (0 is padding), got 0",
    );
    expect(() => createSglangSink(buffersFor(d, { slots: [5, 5] }))).toThrow(
      "[invalid_argument] slots[1]: expected a slot not used by another token, got 5",
    );
    expect(() => createSglangSink(buffersFor(d, { vBuffers: undefined }))).toThrow(
      "[invalid_argument] vBuffers: expected 3 buffers (one per layer), got undefined",
    );
  });
});
