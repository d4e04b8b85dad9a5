import { Code, isOpalError, OpalError, Reason } from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import {
  assertValidDescriptor,
  type KvDescriptor,
  type KvLayerParts,
  partByteLength,
  partsOf,
} from "@opal/kv";
import { describeValue } from "../options/invalid-option";
import type { KvSink } from "./kv-sink";
import { sinkCancelled, toSinkError } from "./sink-errors";

/**
 * What a concrete sink implements; {@link createGuardedSink} adds the checks every sink shares.
 * Hooks never run concurrently with each other.
 */
export interface SinkHooks<Receipt> {
  /** See {@link KvSink.keepsLayerViews}. */
  readonly keepsLayerViews?: boolean;
  /** The descriptor is already validated. Throw to reject it; `discard` then runs. */
  open(descriptor: KvDescriptor): void | Promise<void>;
  /** The layer is the next one in order and every part has its exact byte length. */
  writeLayer(layer: KvLayerParts, signal: AbortSignal): void | Promise<void>;
  /**
   * Every layer was written. Check `signal.aborted` before the step that makes the cache visible
   * (and throw {@link sinkCancelled}); after it, the cache stays committed even if abort arrives.
   */
  commit(stats: PrefillStats, signal: AbortSignal): Receipt | Promise<Receipt>;
  /**
   * Removes or invalidates whatever `open`/`writeLayer` produced. Runs at most once, after `open`
   * was called and unless `commit` succeeded: on `abort` or when any hook threw. Errors are ignored.
   */
  discard(reason: unknown): void | Promise<void>;
}

type State = "new" | "open" | "committed" | "aborted";

/**
 * Wraps `hooks` as a {@link KvSink} enforcing the sink contract: calls in order (`open` once,
 * layers 0..numLayers-1 once each, then `commit`), parts of the right size, serialised calls,
 * `abort` idempotent and never throwing, and any failure discarding what was written so that a
 * partial cache is never committed.
 *
 * Errors: invalid descriptor INVALID_ARGUMENT INVALID_FIELD; a call out of order FAILED_PRECONDITION
 * STREAM_INCOMPLETE; a layer out of order or a commit before the last layer DATA_LOSS
 * STREAM_INCOMPLETE; a missing or mis-sized part INVALID_ARGUMENT INVALID_FIELD; anything after
 * `abort` CANCELLED; anything else a hook throws goes through {@link toSinkError} (file-system
 * errors by errno, the rest INTERNAL).
 */
export function createGuardedSink<Receipt>(hooks: SinkHooks<Receipt>): KvSink<Receipt> {
  let state: State = "new";
  let opened = false;
  let descriptor: KvDescriptor | undefined;
  let nextLayer = 0;
  const controller = new AbortController();
  let queue: Promise<unknown> = Promise.resolve();
  let discarded: Promise<void> | undefined;

  const discard = (reason: unknown): Promise<void> => {
    discarded ??= (async () => {
      if (!opened) return;
      try {
        await hooks.discard(reason);
      } catch {
        // abort never throws; a failed cleanup leaves only temporary names behind.
      }
    })();
    return discarded;
  };

  const serial = <T>(operation: string, run: () => Promise<T>): Promise<T> => {
    const result = queue.then(async () => {
      if (state === "aborted" || controller.signal.aborted) throw sinkCancelled(operation);
      try {
        return await run();
      } catch (thrown) {
        const error = toSinkError(thrown);
        if (state !== "committed") {
          state = "aborted";
          controller.abort(error);
          await discard(error);
        }
        throw error;
      }
    });
    queue = result.catch(() => {});
    return result;
  };

  const expectState = (operation: string, expected: State) => {
    if (state !== expected) {
      throw new OpalError(
        Code.FAILED_PRECONDITION,
        `${operation} called while the sink is ${state}, expected ${expected} (calls go open, writeLayer per layer, commit)`,
        { reason: Reason.STREAM_INCOMPLETE },
      );
    }
  };

  return {
    ...(hooks.keepsLayerViews ? { keepsLayerViews: true } : {}),
    open(given) {
      return serial("open", async () => {
        expectState("open", "new");
        try {
          assertValidDescriptor(given);
        } catch (error) {
          if (!isOpalError(error)) throw error;
          throw new OpalError(Code.INVALID_ARGUMENT, error.rawMessage, {
            reason: Reason.INVALID_FIELD,
            fieldViolations: error.fieldViolations,
            cause: error,
          });
        }
        descriptor = given;
        state = "open";
        opened = true;
        await hooks.open(given);
      });
    },

    writeLayer(layer) {
      return serial("writeLayer", async () => {
        expectState("writeLayer", "open");
        const d = descriptor as KvDescriptor;
        if (layer.layer !== nextLayer) {
          throw new OpalError(
            Code.DATA_LOSS,
            `writeLayer: got layer ${layer.layer}, expected layer ${nextLayer < d.numLayers ? nextLayer : "none"} (the cache has ${d.numLayers} layers, written in order)`,
            { reason: Reason.STREAM_INCOMPLETE },
          );
        }
        for (const part of partsOf(d)) {
          const view = layer.parts[part];
          const expected = partByteLength(d, part);
          if (!(view instanceof Uint8Array) || view.byteLength !== expected) {
            const description = `expected ${expected} bytes, got ${view === undefined ? "none" : describeValue(view)}`;
            throw new OpalError(
              Code.INVALID_ARGUMENT,
              `writeLayer: layer ${layer.layer} part ${part}: ${description}`,
              {
                reason: Reason.INVALID_FIELD,
                fieldViolations: [{ field: `layer.parts.${part}`, description }],
              },
            );
          }
        }
        await hooks.writeLayer(layer, controller.signal);
        nextLayer++;
      });
    },

    commit(stats) {
      return serial("commit", async () => {
        expectState("commit", "open");
        const d = descriptor as KvDescriptor;
        if (nextLayer !== d.numLayers) {
          throw new OpalError(
            Code.DATA_LOSS,
            `commit after ${nextLayer} of ${d.numLayers} layers: a sink never commits a partial cache`,
            { reason: Reason.STREAM_INCOMPLETE },
          );
        }
        const receipt = await hooks.commit(stats, controller.signal);
        state = "committed";
        return receipt;
      });
    },

    async abort(reason) {
      if (state === "committed") return;
      if (!controller.signal.aborted) controller.abort(reason);
      // Wait for the call in progress (it sees the signal), then clean up once.
      await queue;
      // `state` may have changed while waiting.
      if ((state as State) === "committed") return;
      state = "aborted";
      await discard(reason);
    },
  };
}
