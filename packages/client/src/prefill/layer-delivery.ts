import { createChannel } from "@opal/core";
import type { KvDescriptor, KvLayerParts } from "@opal/kv";
import type { LayerReady } from "./prefill-run";

/**
 * Who reads a run's layers: "none" until the first `next()`, "iterating" from then, "gone" once a
 * delivery found the reader no longer there (it ended its loop); a later `next()` iterates again.
 */
export type LayerConsumer = "none" | "iterating" | "gone";

/**
 * Hands a run's verified layers to the one consumer iterating the run, with back-pressure (one
 * layer buffered). A run nobody iterates holds no layers, and a slow consumer slows the stream
 * instead of growing memory.
 */
export interface LayerDelivery extends AsyncIterable<LayerReady> {
  readonly consumer: LayerConsumer;
  /**
   * Delivers `layer` if a consumer is iterating, waiting while the buffer is full; its parts are
   * copied unless `stable` (a consumer that started after `accepted` gets layers whose buffers the
   * next layer reuses). A consumer that stopped iterating is "gone": nothing more is delivered to
   * it and the stream goes on. Rejects only when `signal` aborts while waiting.
   */
  deliver(layer: KvLayerParts, descriptor: KvDescriptor, signal: AbortSignal): Promise<void>;
  /** Ends the layers: the consumer's loop ends after the buffered one. */
  close(): void;
  /** Ends the layers with `error`, which the consumer's loop throws after the buffered one. */
  fail(error: unknown): void;
}

/** A delivery for a run started at `startedAt` (`performance.now()`), which `elapsedMs` counts from. */
export function createLayerDelivery(startedAt: number): LayerDelivery {
  const layers = createChannel<LayerReady>({ capacity: 1 });
  let consumer: LayerConsumer = "none";
  return {
    get consumer() {
      return consumer;
    },
    async deliver(layer, descriptor, signal) {
      if (consumer !== "iterating") return;
      const ready = {
        layer: layer.layer,
        descriptor,
        parts: layer.stable ? layer.parts : copyParts(layer.parts),
        elapsedMs: performance.now() - startedAt,
      };
      // A consumer that stopped iterating makes send reject: stop delivering, keep streaming.
      await layers.send(ready, signal).catch(() => {
        consumer = "gone";
      });
    },
    close: () => layers.close(),
    fail: (error) => layers.fail(error),
    [Symbol.asyncIterator]: () => {
      const reader = layers[Symbol.asyncIterator]();
      return {
        next() {
          consumer = "iterating";
          return reader.next();
        },
        return: () => reader.return?.() ?? Promise.resolve({ value: undefined, done: true }),
      };
    },
  };
}

/** Copies of a layer's parts, for a consumer that keeps them. */
function copyParts(parts: KvLayerParts["parts"]): KvLayerParts["parts"] {
  return Object.fromEntries(
    Object.entries(parts).map(([name, view]) => [name, view?.slice()]),
  ) as KvLayerParts["parts"];
}
