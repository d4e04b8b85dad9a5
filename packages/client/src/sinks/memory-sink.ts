import { fromKvParts, type KvCache, type KvDescriptor, type KvLayerParts, partsOf } from "@opal/kv";
import { createGuardedSink } from "./create-guarded-sink";
import type { KvSink } from "./kv-sink";

/**
 * A sink that keeps the cache in memory. Receipt: a `KvCache` made of the layers it was given:
 * adopted as they are when a layer is `stable`, else copied. It `keepsLayerViews`, so the SDK gives
 * it stable layers and nothing is copied: the receipt's parts are then views, possibly into the
 * received gRPC messages (8-byte aligned; use `byteOffset` when viewing them as typed arrays).
 * Memory grows to the cache's size (`cacheByteLength(descriptor)`). Accepts any valid descriptor.
 * `abort` drops the layers; `commit` after `abort` rejects with CANCELLED.
 */
export function createMemorySink(): KvSink<KvCache> {
  let descriptor: KvDescriptor | undefined;
  let layers: KvLayerParts["parts"][] = [];
  return createGuardedSink<KvCache>({
    keepsLayerViews: true,
    open(given) {
      descriptor = given;
    },
    writeLayer(layer) {
      if (layer.stable) {
        layers.push(layer.parts);
        return;
      }
      const copy: Record<string, Uint8Array> = {};
      for (const part of partsOf(descriptor as KvDescriptor)) {
        copy[part] = (layer.parts[part] as Uint8Array).slice();
      }
      layers.push(copy);
    },
    commit() {
      const cache = fromKvParts(descriptor as KvDescriptor, layers);
      layers = [];
      return cache;
    },
    discard() {
      layers = [];
    },
  });
}
