import { Code, OpalError, Reason } from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import type { KvDescriptor, KvLayerParts } from "@opal/kv";
import { expectOpalError } from "@opal/testing";
import { describe, expect, it } from "vitest";
import { mhaDescriptor, randomCache } from "../../../kv/test/fixtures";
import { createGuardedSink, type SinkHooks } from "./create-guarded-sink";
import { sinkCancelled } from "./sink-errors";

const stats = {} as PrefillStats;

/** Hooks that record every call. */
function recorder(overrides: Partial<SinkHooks<string>> = {}) {
  const calls: string[] = [];
  const hooks: SinkHooks<string> = {
    open: (d: KvDescriptor) => void calls.push(`open ${d.numLayers}`),
    writeLayer: (layer: KvLayerParts) => void calls.push(`layer ${layer.layer}`),
    commit: () => {
      calls.push("commit");
      return "receipt";
    },
    discard: () => void calls.push("discard"),
    ...overrides,
  };
  return { calls, sink: createGuardedSink(hooks) };
}

describe("createGuardedSink", () => {
  const cache = randomCache(mhaDescriptor({ numLayers: 2, tokenCount: 5 }));

  it("passes open, each layer and commit through in order and returns the receipt", async () => {
    const { calls, sink } = recorder();
    await sink.open(cache.descriptor);
    await sink.writeLayer(cache.layer(0));
    await sink.writeLayer(cache.layer(1));
    expect(await sink.commit(stats)).toBe("receipt");
    await sink.abort(new Error("late"));
    expect(calls).toEqual(["open 2", "layer 0", "layer 1", "commit"]);
  });

  it("rejects a layer out of order (DATA_LOSS STREAM_INCOMPLETE) and discards what was written", async () => {
    const { calls, sink } = recorder();
    await sink.open(cache.descriptor);
    const error = await expectOpalError(
      Promise.resolve(sink.writeLayer(cache.layer(1))),
      Code.DATA_LOSS,
      Reason.STREAM_INCOMPLETE,
    );
    expect(error.message).toContain("got layer 1, expected layer 0");
    expect(calls).toEqual(["open 2", "discard"]);
    await expectOpalError(Promise.resolve(sink.commit(stats)), Code.CANCELLED, Reason.CANCELLED);
  });

  it("never commits a partial cache: commit before the last layer is DATA_LOSS and discards", async () => {
    const { calls, sink } = recorder();
    await sink.open(cache.descriptor);
    await sink.writeLayer(cache.layer(0));
    const error = await expectOpalError(
      Promise.resolve(sink.commit(stats)),
      Code.DATA_LOSS,
      Reason.STREAM_INCOMPLETE,
    );
    expect(error.message).toContain("commit after 1 of 2 layers");
    expect(calls).toEqual(["open 2", "layer 0", "discard"]);
  });

  it("rejects a mis-sized part naming expected vs actual bytes (INVALID_ARGUMENT INVALID_FIELD)", async () => {
    const { sink } = recorder();
    await sink.open(cache.descriptor);
    const layer = cache.layer(0);
    const error = await expectOpalError(
      Promise.resolve(
        sink.writeLayer({ layer: 0, parts: { ...layer.parts, v: new Uint8Array(3) } }),
      ),
      Code.INVALID_ARGUMENT,
      Reason.INVALID_FIELD,
    );
    expect(error.message).toContain(
      `part v: expected ${layer.parts.v?.byteLength} bytes, got 3 bytes`,
    );
    expect(error.fieldViolations[0]?.field).toBe("layer.parts.v");
  });

  it("rejects an invalid descriptor with INVALID_FIELD naming the field", async () => {
    const { calls, sink } = recorder();
    const error = await expectOpalError(
      Promise.resolve(sink.open({ ...cache.descriptor, numLayers: 0 })),
      Code.INVALID_ARGUMENT,
      Reason.INVALID_FIELD,
    );
    expect(error.message).toContain(
      "descriptor.numLayers: expected an integer in [1, 65536], got 0",
    );
    expect(calls).toEqual([]);
  });

  it("rejects calls out of sequence with FAILED_PRECONDITION", async () => {
    const { sink } = recorder();
    await expectOpalError(
      Promise.resolve(sink.writeLayer(cache.layer(0))),
      Code.FAILED_PRECONDITION,
      Reason.STREAM_INCOMPLETE,
    );
  });

  it("abort is idempotent, never throws, discards once, and later calls are CANCELLED", async () => {
    const { calls, sink } = recorder({
      discard: () => {
        calls.push("discard");
        throw new Error("cleanup failed");
      },
    });
    await sink.open(cache.descriptor);
    await sink.writeLayer(cache.layer(0));
    await sink.abort(new Error("stop"));
    await sink.abort(new Error("again"));
    expect(calls).toEqual(["open 2", "layer 0", "discard"]);
    await expectOpalError(Promise.resolve(sink.writeLayer(cache.layer(1))), Code.CANCELLED);
  });

  it("abort during a write waits for it, then discards; the write's commit never happens", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { calls, sink } = recorder({
      writeLayer: async (layer) => {
        calls.push(`layer ${layer.layer} start`);
        await gate;
        calls.push(`layer ${layer.layer} end`);
      },
      commit: (_stats, signal) => {
        if (signal.aborted) throw sinkCancelled("commit");
        return "receipt";
      },
    });
    await sink.open(cache.descriptor);
    const writing = Promise.resolve(sink.writeLayer(cache.layer(0)));
    await Promise.resolve();
    const aborting = Promise.resolve(sink.abort(new Error("stop")));
    release();
    await writing;
    await aborting;
    expect(calls).toEqual(["open 2", "layer 0 start", "layer 0 end", "discard"]);
    await expectOpalError(Promise.resolve(sink.commit(stats)), Code.CANCELLED);
  });

  it("a failing hook discards and rethrows its error unchanged", async () => {
    const boom = new OpalError(Code.INTERNAL, "disk on fire");
    const { calls, sink } = recorder({
      writeLayer: () => {
        throw boom;
      },
    });
    await sink.open(cache.descriptor);
    await expect(Promise.resolve(sink.writeLayer(cache.layer(0)))).rejects.toBe(boom);
    expect(calls).toEqual(["open 2", "discard"]);
  });
});
