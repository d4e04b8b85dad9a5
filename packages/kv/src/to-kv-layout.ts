import {
  dtypeByteSize,
  headCountOf,
  headDimOf,
  isScalePart,
  type KvDescriptor,
  type KvLayout,
  partsOf,
} from "./descriptor";
import { createKvCache, type KvCache } from "./kv-cache";
import { KvFormatError } from "./kv-format-error";

/** Shape of a part for {@link transposeKvPart}. */
export interface TransposeKvPartOptions {
  readonly tokenCount: number;
  readonly headCount: number;
  /** Bytes per head row: `headDim * dtypeByteSize`. */
  readonly rowBytes: number;
  readonly from: KvLayout;
  readonly to: KvLayout;
  /** Destination of `src.byteLength` bytes; default a new array. Must not overlap `src`. */
  readonly into?: Uint8Array;
}

/**
 * Converts one part between token-major `nhd` ([tokens][heads][dim]) and head-major `hnd`
 * ([heads][tokens][dim]). Pure; returns `into` or a new array (a copy even when from == to).
 */
export function transposeKvPart(src: Uint8Array, options: TransposeKvPartOptions): Uint8Array {
  const { tokenCount: t, headCount: h, rowBytes: rb } = options;
  if (src.byteLength !== t * h * rb) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `part is ${src.byteLength} bytes, expected ${t}x${h}x${rb} = ${t * h * rb}`,
    );
  }
  const out = options.into ?? new Uint8Array(src.byteLength);
  if (out.byteLength !== src.byteLength) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `destination is ${out.byteLength} bytes, expected ${src.byteLength}`,
    );
  }
  if (options.from === options.to || t === 1 || h === 1) {
    out.set(src);
    return out;
  }
  // nhd row (token i, head j) = i*h + j; hnd row = j*t + i.
  const nhdToHnd = options.from === "nhd";
  for (let i = 0; i < t; i++) {
    for (let j = 0; j < h; j++) {
      const nhd = (i * h + j) * rb;
      const hnd = (j * t + i) * rb;
      if (nhdToHnd) out.set(src.subarray(nhd, nhd + rb), hnd);
      else out.set(src.subarray(hnd, hnd + rb), nhd);
    }
  }
  return out;
}

/** Byte length of one head row of a data part of `descriptor`. */
export function rowBytesOf(descriptor: KvDescriptor): number {
  return headDimOf(descriptor) * dtypeByteSize(descriptor.dtype);
}

/**
 * A copy of `cache` with its data parts in `layout` (scale parts copied unchanged). Going to
 * "hnd" from an mla cache throws UNSUPPORTED_LAYOUT.
 */
export function toKvLayout(cache: KvCache, layout: KvLayout): KvCache {
  const from = cache.descriptor;
  const descriptor: KvDescriptor = { ...from, layout };
  const out = createKvCache(descriptor);
  const shape = {
    tokenCount: from.tokenCount,
    headCount: headCountOf(from),
    rowBytes: rowBytesOf(from),
  };
  for (let layer = 0; layer < from.numLayers; layer++) {
    for (const part of partsOf(from)) {
      const src = cache.part(layer, part);
      const dst = out.part(layer, part);
      if (isScalePart(part)) dst.set(src);
      else transposeKvPart(src, { ...shape, from: from.layout, to: layout, into: dst });
    }
  }
  return out;
}
