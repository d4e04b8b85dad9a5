import { Code, OpalError } from "@opal/core";
import {
  isScalePart,
  type KvCache,
  type KvDescriptor,
  type KvLayerParts,
  type KvPart,
  partByteLength,
  partsOf,
} from "@opal/kv";

/**
 * A `KvCache` view of one layer, so the per-layer converters of `@opal/kv` (which read
 * `cache.part(layer, part)`) can run on a layer as it arrives. No copy; asking for another layer
 * throws OUT_OF_RANGE.
 */
export function layerAsCache(descriptor: KvDescriptor, layer: KvLayerParts): KvCache {
  const part = (index: number, name: KvPart): Uint8Array => {
    const view = index === layer.layer ? layer.parts[name] : undefined;
    if (!view) {
      throw new OpalError(
        Code.OUT_OF_RANGE,
        `layer ${index} part ${name} is not available (only layer ${layer.layer} is)`,
      );
    }
    return view;
  };
  return {
    descriptor,
    part,
    layer(index) {
      part(index, partsOf(descriptor)[0] as KvPart);
      return layer;
    },
  };
}

/** Layer `layer` with every part zero-filled (for overwriting what an aborted sink wrote). */
export function zeroLayer(descriptor: KvDescriptor, layer: number): KvLayerParts {
  const parts: Partial<Record<KvPart, Uint8Array>> = {};
  for (const name of partsOf(descriptor))
    parts[name] = new Uint8Array(partByteLength(descriptor, name));
  return { layer, parts };
}

/** Copies of the scale parts of `layer` (`k_scale`, `v_scale`, `latent_scale`); empty without scales. */
export function copyScales(descriptor: KvDescriptor, layer: KvLayerParts): KvLayerParts["parts"] {
  const out: Partial<Record<KvPart, Uint8Array>> = {};
  for (const name of partsOf(descriptor)) {
    if (isScalePart(name)) out[name] = (layer.parts[name] as Uint8Array).slice();
  }
  return out;
}
