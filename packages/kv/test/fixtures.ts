import {
  createKvCache,
  headCountOf,
  headDimOf,
  isScalePart,
  type KvCache,
  type KvDescriptor,
  partsOf,
} from "../src/index";

/** A valid small mha descriptor; override any field. */
export function mhaDescriptor(overrides: Partial<KvDescriptor> = {}): KvDescriptor {
  return {
    modelFingerprint: "0123abcd",
    numLayers: 3,
    attention: { kind: "mha", numKvHeads: 4, headDim: 8 },
    headRange: { start: 0, count: 4 },
    dtype: "f32",
    scaleScheme: "none",
    layout: "nhd",
    tokenStart: 0,
    tokenCount: 37,
    blockSizeTokens: 16,
    numerics: {
      deviceKind: "reference",
      precisionPath: "f32",
      bitExact: true,
      maxAbsError: 0,
      maxRelError: 0,
    },
    ...overrides,
  };
}

/** A valid small mla descriptor (latent 16 + rope 4). */
export function mlaDescriptor(overrides: Partial<KvDescriptor> = {}): KvDescriptor {
  return mhaDescriptor({
    attention: { kind: "mla", latentDim: 16, ropeDim: 4 },
    headRange: { start: 0, count: 1 },
    ...overrides,
  });
}

/** Deterministic pseudo-random bytes (xorshift32). */
export function randomBytes(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A cache filled with deterministic random bytes (scale parts hold positive f32 scales). */
export function randomCache(descriptor: KvDescriptor, seed = 1): KvCache {
  const cache = createKvCache(descriptor);
  let s = seed;
  for (let layer = 0; layer < descriptor.numLayers; layer++) {
    for (const part of partsOf(descriptor)) {
      const view = cache.part(layer, part);
      if (isScalePart(part)) {
        const f = new Float32Array(view.buffer, view.byteOffset, view.byteLength / 4);
        for (let i = 0; i < f.length; i++) f[i] = 0.5 + ((s++ * 7919) % 1000) / 1000;
      } else {
        view.set(randomBytes(view.byteLength, s++ * 2654435761));
      }
    }
  }
  return cache;
}

/**
 * An f32 cache whose every element encodes its own coordinates: layer, part, absolute token,
 * absolute head, dim. A transposition or misplaced copy shows up as a wrong value.
 */
export function coordinateCache(descriptor: KvDescriptor): KvCache {
  if (descriptor.dtype !== "f32") throw new Error("coordinateCache needs f32");
  const cache = createKvCache(descriptor);
  const t = descriptor.tokenCount;
  const h = headCountOf(descriptor);
  const d = headDimOf(descriptor);
  partsOf(descriptor).forEach((part, p) => {
    if (isScalePart(part)) return;
    for (let layer = 0; layer < descriptor.numLayers; layer++) {
      const view = cache.part(layer, part);
      const f = new Float32Array(view.buffer, view.byteOffset, view.byteLength / 4);
      for (let token = 0; token < t; token++) {
        for (let head = 0; head < h; head++) {
          for (let dim = 0; dim < d; dim++) {
            const row = descriptor.layout === "nhd" ? token * h + head : head * t + token;
            f[row * d + dim] = coordinateValue(
              layer,
              p,
              descriptor.tokenStart + token,
              descriptor.headRange.start + head,
              dim,
            );
          }
        }
      }
    }
  });
  return cache;
}

/** The value {@link coordinateCache} stores at these coordinates (exact in f32 for small shapes). */
export function coordinateValue(
  layer: number,
  part: number,
  token: number,
  head: number,
  dim: number,
): number {
  return (((layer * 4 + part) * 512 + token) * 16 + head) * 64 + dim;
}

/** True when both caches have equal descriptors and equal bytes. */
export function sameCache(a: KvCache, b: KvCache): boolean {
  if (JSON.stringify(a.descriptor) !== JSON.stringify(b.descriptor)) return false;
  for (let layer = 0; layer < a.descriptor.numLayers; layer++) {
    for (const part of partsOf(a.descriptor)) {
      if (Buffer.compare(a.part(layer, part), b.part(layer, part)) !== 0) return false;
    }
  }
  return true;
}
