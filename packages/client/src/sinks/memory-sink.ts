import { fromKvParts, type KvCache, type KvDescriptor, type KvLayerParts, partsOf } from "@opal/kv";
import type { KvSink } from "../kv-sink";
import { createGuardedSink } from "./create-guarded-sink";

/**
 * A sink that keeps the cache in memory. Receipt: a `KvCache` made of the layers it was given:
 * adopted as they are (no copy), or copied when a layer is `transient`. It `keepsLayerViews`, so
 * the SDK gives it layers of their own and nothing is copied.
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
      if (!layer.transient) {
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
