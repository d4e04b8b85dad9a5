import { Code, Reason } from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import { copyKvCache, type KvCache } from "@opal/kv";
import { expectOpalError } from "@opal/testing";
import { describe, expect, it } from "vitest";
import { mhaDescriptor, mlaDescriptor, randomCache, sameCache } from "../../../kv/test/fixtures";
import { createMemorySink } from "./memory-sink";

const stats = {} as PrefillStats;

describe("createMemorySink", () => {
  for (const cache of [
    randomCache(mhaDescriptor({ dtype: "int8", scaleScheme: "per_head", layout: "hnd" })),
    randomCache(mlaDescriptor({ dtype: "bf16" })),
  ]) {
    it(`commits a cache equal to the layers fed (${cache.descriptor.attention.kind}), owning its bytes`, async () => {
      const expected = copyKvCache(cache);
      const sink = createMemorySink();
      await sink.open(cache.descriptor);
      for (let layer = 0; layer < cache.descriptor.numLayers; layer++) {
        await sink.writeLayer(cache.layer(layer));
        // A layer not marked stable is only valid during writeLayer: the caller may reuse it right after.
        for (const view of Object.values(cache.layer(layer).parts)) view?.fill(0x5a);
      }
      const received: KvCache = await sink.commit(stats);
      expect(sameCache(received, expected)).toBe(true);
    });
  }

  it("adopts stable layers without copying them", async () => {
    const cache = randomCache(mhaDescriptor());
    const sink = createMemorySink();
    expect(sink.keepsLayerViews).toBe(true);
    await sink.open(cache.descriptor);
    for (let layer = 0; layer < cache.descriptor.numLayers; layer++) {
      await sink.writeLayer({ ...cache.layer(layer), stable: true });
    }
    const received: KvCache = await sink.commit(stats);
    expect(received.part(1, "v").buffer).toBe(cache.part(1, "v").buffer);
    expect(sameCache(received, cache)).toBe(true);
  });

  it("abort leaves nothing: commit then rejects with CANCELLED", async () => {
    const cache = randomCache(mhaDescriptor());
    const sink = createMemorySink();
    await sink.open(cache.descriptor);
    await sink.writeLayer(cache.layer(0));
    await sink.abort(new Error("stream failed"));
    await expectOpalError(Promise.resolve(sink.commit(stats)), Code.CANCELLED, Reason.CANCELLED);
  });

  it("rejects a layer that does not match the descriptor, naming expected vs actual", async () => {
    const cache = randomCache(mhaDescriptor());
    const other = randomCache(mhaDescriptor({ tokenCount: 36 }));
    const sink = createMemorySink();
    await sink.open(cache.descriptor);
    const error = await expectOpalError(
      Promise.resolve(sink.writeLayer(other.layer(0))),
      Code.INVALID_ARGUMENT,
      Reason.INVALID_FIELD,
    );
    expect(error.message).toContain(
      `part k: expected ${37 * 4 * 8 * 4} bytes, got ${36 * 4 * 8 * 4} bytes`,
    );
  });
});
