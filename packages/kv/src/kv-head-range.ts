import {
  dtypeByteSize,
  headDimOf,
  isScalePart,
  type KvDescriptor,
  type KvHeadRange,
  type KvPart,
  partsOf,
} from "./descriptor";
import { createKvCache, type KvCache } from "./kv-cache";
import { KvFormatError } from "./kv-format-error";
import { normalizeDescriptor } from "./okv-format";

/**
 * The KV heads tensor-parallel rank `rank` of `tpSize` holds, as vLLM assigns them: with
 * `tpSize <= numKvHeads` (which must divide evenly) rank r holds `numKvHeads / tpSize` heads from
 * `r * numKvHeads / tpSize`; with more ranks than heads each head is replicated on
 * `tpSize / numKvHeads` consecutive ranks and rank r holds head `floor(r * numKvHeads / tpSize)`.
 */
export function headRangeOf(options: {
  numKvHeads: number;
  tpSize: number;
  rank: number;
}): KvHeadRange {
  const { numKvHeads: heads, tpSize: tp, rank } = options;
  if (
    !Number.isInteger(rank) ||
    rank < 0 ||
    rank >= tp ||
    !Number.isInteger(tp) ||
    tp < 1 ||
    !Number.isInteger(heads) ||
    heads < 1
  ) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `rank ${rank} of tpSize ${tp} with ${heads} KV heads is out of range`,
    );
  }
  if (tp <= heads) {
    if (heads % tp !== 0)
      throw new KvFormatError(
        "OUT_OF_RANGE",
        `${heads} KV heads do not divide across tpSize ${tp}`,
      );
    const count = heads / tp;
    return { start: rank * count, count };
  }
  if (tp % heads !== 0)
    throw new KvFormatError("OUT_OF_RANGE", `tpSize ${tp} is not a multiple of ${heads} KV heads`);
  return { start: Math.floor((rank * heads) / tp), count: 1 };
}

function copyHeads(
  src: Uint8Array,
  dst: Uint8Array,
  d: KvDescriptor,
  srcHeads: number,
  dstHeads: number,
  srcFirst: number,
  dstFirst: number,
  count: number,
): void {
  const rb = headDimOf(d) * dtypeByteSize(d.dtype);
  const t = d.tokenCount;
  if (d.layout === "hnd") {
    // Heads are contiguous planes of t rows.
    dst.set(src.subarray(srcFirst * t * rb, (srcFirst + count) * t * rb), dstFirst * t * rb);
    return;
  }
  for (let i = 0; i < t; i++) {
    const from = (i * srcHeads + srcFirst) * rb;
    dst.set(src.subarray(from, from + count * rb), (i * dstHeads + dstFirst) * rb);
  }
}

function copyScales(
  src: Uint8Array,
  dst: Uint8Array,
  d: KvDescriptor,
  srcFirst: number,
  dstFirst: number,
  count: number,
): void {
  if (d.scaleScheme === "per_head")
    dst.set(src.subarray(srcFirst * 4, (srcFirst + count) * 4), dstFirst * 4);
  else dst.set(src);
}

/**
 * A copy of the heads `range` (absolute head ids, inside `cache.descriptor.headRange`) of every
 * layer: prefill TP smaller than decode TP. Per-head scales are sliced; per-tensor and per-token
 * scales are copied. For mla, `range` must be `{start: 0, count: 1}` (MLA is replicated).
 */
export function sliceKvHeads(cache: KvCache, range: KvHeadRange): KvCache {
  const d = cache.descriptor;
  const have = d.headRange;
  if (
    !Number.isInteger(range.start) ||
    !Number.isInteger(range.count) ||
    range.count < 1 ||
    range.start < have.start ||
    range.start + range.count > have.start + have.count
  ) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `head range [${range.start}, ${range.start + range.count}) is not inside the cache's [${have.start}, ${have.start + have.count})`,
      { field: "range" },
    );
  }
  const out = createKvCache({ ...d, headRange: { start: range.start, count: range.count } });
  const first = range.start - have.start;
  for (let layer = 0; layer < d.numLayers; layer++) {
    for (const part of partsOf(d)) {
      const src = cache.part(layer, part);
      const dst = out.part(layer, part);
      if (isScalePart(part)) copyScales(src, dst, d, first, 0, range.count);
      else copyHeads(src, dst, d, have.count, range.count, first, 0, range.count);
    }
  }
  return out;
}

/**
 * Joins caches of adjacent head ranges (given in any order) into one cache covering their union:
 * decode TP smaller than prefill TP. Every other descriptor field must be equal (SHAPE_MISMATCH);
 * ranges must tile without gap or overlap (INVALID_OFFSETS). Per-tensor and per-token scales must
 * be equal across the inputs (SHAPE_MISMATCH otherwise); per-head scales are joined.
 */
export function mergeKvHeads(caches: readonly KvCache[]): KvCache {
  if (caches.length === 0)
    throw new KvFormatError("SHAPE_MISMATCH", "mergeKvHeads needs at least one cache");
  const sorted = [...caches].sort(
    (a, b) => a.descriptor.headRange.start - b.descriptor.headRange.start,
  );
  const base = (sorted[0] as KvCache).descriptor;
  // Field by field in a fixed order: equal descriptors compare equal whatever their key order.
  const strip = (d: KvDescriptor) =>
    JSON.stringify(normalizeDescriptor({ ...d, headRange: undefined }));
  let next = base.headRange.start;
  for (const cache of sorted) {
    if (strip(cache.descriptor) !== strip(base)) {
      throw new KvFormatError(
        "SHAPE_MISMATCH",
        "caches to merge differ in fields other than headRange",
      );
    }
    if (cache.descriptor.headRange.start !== next) {
      throw new KvFormatError(
        "INVALID_OFFSETS",
        `head range starts at ${cache.descriptor.headRange.start}, expected ${next} (gap or overlap)`,
      );
    }
    next += cache.descriptor.headRange.count;
  }
  const total = next - base.headRange.start;
  const out = createKvCache({ ...base, headRange: { start: base.headRange.start, count: total } });
  for (let layer = 0; layer < base.numLayers; layer++) {
    for (const part of partsOf(base) as KvPart[]) {
      const dst = out.part(layer, part);
      for (const cache of sorted) {
        const r = cache.descriptor.headRange;
        const src = cache.part(layer, part);
        const first = r.start - base.headRange.start;
        if (isScalePart(part)) {
          const firstScales = (sorted[0] as KvCache).part(layer, part);
          if (base.scaleScheme !== "per_head" && Buffer.compare(src, firstScales) !== 0) {
            throw new KvFormatError(
              "SHAPE_MISMATCH",
              `layer ${layer} ${part}: ${base.scaleScheme} scales differ between head ranges`,
            );
          }
          copyScales(src, dst, base, 0, first, r.count);
        } else {
          copyHeads(src, dst, base, r.count, total, 0, first, r.count);
        }
      }
    }
  }
  return out;
}
