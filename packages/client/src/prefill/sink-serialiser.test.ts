import { Code, OpalError } from "@opal/core";
import type { KvDescriptor } from "@opal/kv";
import { describe, expect, it } from "vitest";
import type { KvSink } from "../sinks/kv-sink";
import { createSinkSerialiser } from "./sink-serialiser";

const descriptor = {} as KvDescriptor;

/** A sink recording its calls; `open` waits for `release()` when `holdOpen` is set. */
function recordingSink(holdOpen = false) {
  const calls: string[] = [];
  let release = () => {};
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const sink: KvSink<string> = {
    async open() {
      calls.push("open");
      if (holdOpen) await held;
      calls.push("opened");
    },
    writeLayer: (layer) => {
      calls.push(`layer ${layer.layer}`);
    },
    commit: () => {
      calls.push("commit");
      return "receipt";
    },
    abort: (reason) => {
      calls.push(`abort ${(reason as OpalError).code}`);
    },
  };
  return { sink, calls, release };
}

describe("createSinkSerialiser", () => {
  it("passes calls to the sink in order and says when it was opened", async () => {
    const { sink, calls } = recordingSink();
    const serialiser = createSinkSerialiser(sink, new AbortController().signal);
    expect(serialiser.state).toBe("new");
    await serialiser.open(descriptor);
    expect(serialiser.state).toBe("opened");
    await serialiser.writeLayer({ layer: 0, parts: {} });
    expect(await serialiser.commit({} as never)).toBe("receipt");
    expect(calls).toEqual(["open", "opened", "layer 0", "commit"]);
  });

  it("leaves a sink never opened alone, and aborts an opened one before resolving", async () => {
    const never = recordingSink();
    await createSinkSerialiser(never.sink, new AbortController().signal).abandon(failure());
    expect(never.calls).toEqual([]);
    const opened = recordingSink();
    const serialiser = createSinkSerialiser(opened.sink, new AbortController().signal);
    await serialiser.open(descriptor);
    await serialiser.abandon(failure());
    expect(opened.calls).toEqual(["open", "opened", `abort ${Code.UNAVAILABLE}`]);
  });

  it("ends a call at the abort, and aborts the sink only once that call returns", async () => {
    const { sink, calls, release } = recordingSink(true);
    const stop = new AbortController();
    const serialiser = createSinkSerialiser(sink, stop.signal);
    const opening = serialiser.open(descriptor);
    stop.abort();
    await expect(opening).rejects.toMatchObject({ code: Code.CANCELLED });
    await serialiser.abandon(failure()); // does not wait for the stuck call
    expect(calls).toEqual(["open"]);
    release();
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).toEqual(["open", "opened", `abort ${Code.UNAVAILABLE}`]);
  });

  it("calls nothing once the run's signal has aborted", async () => {
    const { sink, calls } = recordingSink();
    const stop = new AbortController();
    stop.abort();
    const serialiser = createSinkSerialiser(sink, stop.signal);
    await expect(serialiser.open(descriptor)).rejects.toMatchObject({ code: Code.CANCELLED });
    expect(calls).toEqual([]);
  });
});

function failure(): OpalError {
  return new OpalError(Code.UNAVAILABLE, "the attempt failed");
}
