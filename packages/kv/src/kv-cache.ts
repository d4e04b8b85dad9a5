import {
  assertValidDescriptor,
  type KvDescriptor,
  type KvPart,
  partByteLength,
  partsOf,
} from "./descriptor";
import { KvFormatError } from "./kv-format-error";

/** The parts of one layer, each a byte view in the descriptor's dtype and layout. */
export interface KvLayerParts {
  /** 0-based layer index. */
  readonly layer: number;
  /** One view per part of `partsOf(descriptor)`; scale parts hold little-endian f32. */
  readonly parts: Readonly<Partial<Record<KvPart, Uint8Array>>>;
  /**
   * True when the views stay valid and nothing else writes their bytes after this layer is handed
   * over (an assembler's fresh or adopted buffers): a holder may keep them without copying.
   * Absent: the views may be reused, so whoever keeps them copies them.
   */
  readonly stable?: boolean;
}

/**
 * An in-memory KV cache: one byte view per layer and part, never copied unless a function says so.
 * Views alias the underlying buffers: writing to one is visible to every holder of the cache.
 */
export interface KvCache {
  readonly descriptor: KvDescriptor;
  /** The view of `part` of `layer` (`partByteLength(descriptor, part)` bytes). Throws OUT_OF_RANGE. */
  part(layer: number, part: KvPart): Uint8Array;
  /** All parts of `layer`. */
  layer(layer: number): KvLayerParts;
}

class LayeredKvCache implements KvCache {
  constructor(
    readonly descriptor: KvDescriptor,
    private readonly layers: readonly KvLayerParts[],
  ) {}

  part(layer: number, part: KvPart): Uint8Array {
    const view = this.layers[layer]?.parts[part];
    if (view === undefined) {
      throw new KvFormatError(
        "OUT_OF_RANGE",
        `layer ${layer} part ${part} out of range (cache has ${this.descriptor.numLayers} layers, parts ${partsOf(this.descriptor).join(", ")})`,
        { field: "layer" },
      );
    }
    return view;
  }

  layer(layer: number): KvLayerParts {
    const parts = this.layers[layer];
    if (parts === undefined) {
      throw new KvFormatError(
        "OUT_OF_RANGE",
        `layer ${layer} out of range (cache has ${this.descriptor.numLayers} layers)`,
        { field: "layer" },
      );
    }
    return parts;
  }
}

/**
 * Allocates a zero-filled cache for `descriptor` (validated first): one ArrayBuffer per layer
 * holding its parts in canonical order, each part 8-byte aligned. Memory is
 * `cacheByteLength(descriptor)` bytes plus at most 7 bytes of padding per part.
 */
export function createKvCache(descriptor: KvDescriptor): KvCache {
  assertValidDescriptor(descriptor);
  const layers: KvLayerParts[] = [];
  // Each part starts at a multiple of 8 bytes so typed views (f32 scales, f16 data) always work.
  const align = (n: number) => Math.ceil(n / 8) * 8;
  let bytes = 0;
  for (const part of partsOf(descriptor)) bytes += align(partByteLength(descriptor, part));
  for (let layer = 0; layer < descriptor.numLayers; layer++) {
    const buffer = new ArrayBuffer(bytes);
    const parts: Partial<Record<KvPart, Uint8Array>> = {};
    let offset = 0;
    for (const part of partsOf(descriptor)) {
      const length = partByteLength(descriptor, part);
      parts[part] = new Uint8Array(buffer, offset, length);
      offset += align(length);
    }
    layers.push({ layer, parts });
  }
  return new LayeredKvCache(descriptor, layers);
}

/**
 * Wraps existing views as a cache without copying. `layers[l]` holds the parts of layer `l`; every
 * part of `partsOf(descriptor)` must be present with exactly `partByteLength` bytes (SHAPE_MISMATCH
 * otherwise). The cache aliases the given views.
 */
export function fromKvParts(
  descriptor: KvDescriptor,
  layers: readonly Readonly<Partial<Record<KvPart, Uint8Array>>>[],
): KvCache {
  assertValidDescriptor(descriptor);
  if (layers.length !== descriptor.numLayers) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `got ${layers.length} layers, expected ${descriptor.numLayers}`,
      { field: "layers" },
    );
  }
  const out: KvLayerParts[] = [];
  for (let layer = 0; layer < layers.length; layer++) {
    const given = layers[layer] as Readonly<Partial<Record<KvPart, Uint8Array>>>;
    const parts: Partial<Record<KvPart, Uint8Array>> = {};
    for (const part of partsOf(descriptor)) {
      const view = given[part];
      const expected = partByteLength(descriptor, part);
      if (!(view instanceof Uint8Array) || view.byteLength !== expected) {
        throw new KvFormatError(
          "SHAPE_MISMATCH",
          `layer ${layer} part ${part}: ${view instanceof Uint8Array ? `${view.byteLength} bytes` : "missing"}, expected ${expected} bytes`,
          { field: `layers[${layer}].${part}` },
        );
      }
      parts[part] = view;
    }
    out.push({ layer, parts });
  }
  return new LayeredKvCache(descriptor, out);
}

/** A deep copy of `cache` into freshly allocated buffers (same descriptor). */
export function copyKvCache(cache: KvCache): KvCache {
  const copy = createKvCache(cache.descriptor);
  for (let layer = 0; layer < cache.descriptor.numLayers; layer++) {
    for (const part of partsOf(cache.descriptor))
      copy.part(layer, part).set(cache.part(layer, part));
  }
  return copy;
}

/**
 * A Float32Array over the bytes of an f32 part or scale part: a view when `bytes.byteOffset` is a
 * multiple of 4, otherwise a copy. Assumes a little-endian host (x86-64, arm64).
 */
export function toFloat32View(bytes: Uint8Array): Float32Array {
  if (bytes.byteLength % 4 !== 0) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `byte length ${bytes.byteLength} is not a multiple of 4`,
    );
  }
  if (bytes.byteOffset % 4 === 0) {
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  }
  return new Float32Array(bytes.slice().buffer);
}
