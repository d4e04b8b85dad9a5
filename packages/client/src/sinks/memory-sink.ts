import { fromKvParts, type KvCache, type KvDescriptor, type KvLayerParts, partsOf } from "@opal/kv";
import type { KvSink } from "../kv-sink";
import { createGuardedSink } from "./create-guarded-sink";

/**
 * A sink that keeps the cache in memory. Receipt: a `KvCache` that owns its bytes (each layer is
 * copied as it arrives, one buffer per part, since layer views are only valid during
 * `writeLayer`). Memory grows to the cache's size (`cacheByteLength(descriptor)`). Accepts any
 * valid descriptor. `abort` drops the copies; `commit` after `abort` rejects with CANCELLED.
 */
export function createMemorySink(): KvSink<KvCache> {
  let descriptor: KvDescriptor | undefined;
  let layers: KvLayerParts["parts"][] = [];
  return createGuardedSink<KvCache>({
    open(given) {
      descriptor = given;
    },
    writeLayer(layer) {
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
