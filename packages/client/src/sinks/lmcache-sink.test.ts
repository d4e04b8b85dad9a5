import { Code, Reason } from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import { fromLmcacheChunks, toLmcacheChunks } from "@opal/kv";
import { expectOpalError } from "@opal/testing";
import { describe, expect, it } from "vitest";
import { mhaDescriptor, mlaDescriptor, randomCache, sameCache } from "../../../kv/test/fixtures";
import { createLmcacheSink } from "./lmcache-sink";

const stats = {} as PrefillStats;

describe("createLmcacheSink", () => {
  for (const d of [
    mhaDescriptor({ dtype: "bf16", layout: "hnd", tokenCount: 600, tokenStart: 256 }),
    mlaDescriptor({ tokenCount: 300 }),
  ]) {
    it(`${d.attention.kind}: commits 256-token chunks that rebuild the cache`, async () => {
      const cache = randomCache(d);
      const sink = createLmcacheSink();
      await sink.open(d);
      for (let layer = 0; layer < d.numLayers; layer++) await sink.writeLayer(cache.layer(layer));
      const receipt = await sink.commit(stats);
      expect(receipt.chunks.length).toBe(Math.ceil(d.tokenCount / 256));
      expect(receipt).toMatchObject({
        chunkSizeTokens: 256,
        memoryFormat: "kv_2ltd",
        tokenStart: d.tokenStart,
        descriptor: d,
      });
      expect(sameCache(fromLmcacheChunks(receipt.chunks, d), cache)).toBe(true);
      expect(receipt.chunks).toEqual(toLmcacheChunks(cache, { memoryFormat: "kv_2ltd" }));
    });
  }

  it("commits chunks in the memoryFormat asked for", async () => {
    const d = mhaDescriptor({ tokenCount: 40 });
    const cache = randomCache(d);
    const sink = createLmcacheSink({ chunkSizeTokens: 16, memoryFormat: "kv_shape" });
    await sink.open(d);
    for (let layer = 0; layer < d.numLayers; layer++) await sink.writeLayer(cache.layer(layer));
    const receipt = await sink.commit(stats);
    expect(receipt.memoryFormat).toBe("kv_shape");
    expect(receipt.chunks).toEqual(
      toLmcacheChunks(cache, { chunkSizeTokens: 16, memoryFormat: "kv_shape" }),
    );
  });

  it("abort drops the buffered layers: commit rejects with CANCELLED", async () => {
    const cache = randomCache(mhaDescriptor());
    const sink = createLmcacheSink({ chunkSizeTokens: 16 });
    await sink.open(cache.descriptor);
    await sink.writeLayer(cache.layer(0));
    await sink.abort(new Error("stream failed"));
    await expectOpalError(Promise.resolve(sink.commit(stats)), Code.CANCELLED, Reason.CANCELLED);
  });

  it("rejects a cache LMCache cannot hold and a bad chunk size, naming expected vs actual", async () => {
    const error = await expectOpalError(
      Promise.resolve(createLmcacheSink().open(mhaDescriptor({ tokenStart: 5 }))),
      Code.FAILED_PRECONDITION,
      Reason.DESCRIPTOR_MISMATCH,
    );
    expect(error.message).toBe(
      "[failed_precondition] tokenStart: LMCache chunks start at multiples of 256 tokens, the cache starts at token 5",
    );
    const scaled = await expectOpalError(
      Promise.resolve(
        createLmcacheSink().open(mhaDescriptor({ dtype: "int8", scaleScheme: "per_token" })),
      ),
      Code.FAILED_PRECONDITION,
      Reason.DESCRIPTOR_MISMATCH,
    );
    expect(scaled.message).toContain(
      "LMCache chunks carry no scales, the cache has per_token scales",
    );
    expect(() => createLmcacheSink({ chunkSizeTokens: 0 })).toThrow(
      "[invalid_argument] chunkSizeTokens: expected an integer >= 1, got 0",
    );
    expect(() => createLmcacheSink({ memoryFormat: "KV_T2D" as unknown as "kv_2ltd" })).toThrow(
      '[invalid_argument] memoryFormat: expected "kv_2ltd" or "kv_shape", got "KV_T2D"',
    );
  });
});
