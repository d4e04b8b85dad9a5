import { toAbortError, untilAborted } from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import type { KvDescriptor, KvLayerParts } from "@opal/kv";
import type { KvSink } from "../sinks/kv-sink";

/**
 * Where an attempt's sink stands: "new" until `open` is called, "opened" from then (whatever
 * `open` answers: a sink asked to open is aborted if the attempt fails).
 */
export type SinkState = "new" | "opened";

/**
 * One attempt's sink, its calls bounded by the run's signal: a call the signal ends early is left
 * running, and the sink is aborted only once it returns (a sink is never called during a call).
 */
export interface SinkSerialiser<Receipt> {
  readonly state: SinkState;
  /** The sink's `keepsLayerViews` hint (default false). */
  readonly keepsLayerViews: boolean;
  open(descriptor: KvDescriptor): Promise<void>;
  writeLayer(layer: KvLayerParts): Promise<void>;
  commit(stats: PrefillStats): Promise<Receipt>;
  /**
   * Aborts an opened sink with `error` once its last call has settled; resolves when it is
   * aborted, or at once when a call is still running (the signal ended the run during it: the sink
   * is aborted in the background after it returns). Never rejects; a sink never opened is left.
   */
  abandon(error: unknown): Promise<void>;
}

/** Wraps `sink` for one attempt of a run that `signal` ends (each call rejects once it aborts). */
export function createSinkSerialiser<Receipt>(
  sink: KvSink<Receipt>,
  signal: AbortSignal,
): SinkSerialiser<Receipt> {
  let state: SinkState = "new";
  // Sink calls in progress, and when the last one settles.
  let running = 0;
  let idle = Promise.resolve();
  const call = <T>(operation: () => T | Promise<T>): Promise<T> => {
    if (signal.aborted) return Promise.reject(toAbortError(signal.reason));
    running++;
    const result = Promise.resolve()
      .then(operation)
      .finally(() => {
        running--;
      });
    idle = result.then(
      () => {},
      () => {},
    );
    return untilAborted(result, signal);
  };
  return {
    get state() {
      return state;
    },
    get keepsLayerViews() {
      return sink.keepsLayerViews === true;
    },
    open(descriptor) {
      state = "opened";
      return call(() => sink.open(descriptor));
    },
    writeLayer: (layer) => call(() => sink.writeLayer(layer)),
    commit: (stats) => call(() => sink.commit(stats)),
    async abandon(error) {
      if (state === "new") return;
      const stuck = running > 0;
      const aborting = idle.then(() => sink.abort(error)).catch(() => {});
      if (!stuck) await aborting;
    },
  };
}
