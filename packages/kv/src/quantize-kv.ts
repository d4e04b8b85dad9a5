import type { KvDtype, KvLayout, KvScaleScheme } from "./descriptor";
import { e4m3fnTable, e5m2Table } from "./dtype-tables";
import { encodeE4m3fn, encodeE5m2, encodeInt8 } from "./from-float32";
import { KvFormatError } from "./kv-format-error";

/** Shape of one layer part, as needed to map elements to their scale. */
export interface KvPartShape {
  readonly tokenCount: number;
  /** Heads in the part (1 for mla). */
  readonly headCount: number;
  /** Elements per head row. */
  readonly headDim: number;
  readonly layout: KvLayout;
}

/** Options of {@link quantizeKv} and {@link dequantizeKv}. */
export interface QuantizeKvOptions {
  /** Quantised dtype: fp8_e4m3fn, fp8_e5m2 or int8. */
  readonly dtype: KvDtype;
  readonly scaleScheme: KvScaleScheme;
  readonly shape: KvPartShape;
  /** Use these scales instead of computing them (quantize only); default computed from absmax. */
  readonly scales?: Float32Array;
}

/** A quantised part and its f32 scales (`real = q * scale`). */
export interface QuantizedKv {
  readonly data: Uint8Array;
  readonly scales: Float32Array;
}

/** Largest finite magnitude of a quantised dtype: 448, 57344 or 127. */
export function quantMaxOf(dtype: KvDtype): number {
  if (dtype === "fp8_e4m3fn") return 448;
  if (dtype === "fp8_e5m2") return 57_344;
  if (dtype === "int8") return 127;
  throw new KvFormatError(
    "UNSUPPORTED_DTYPE",
    `dtype ${dtype} is not quantised (expected fp8_e4m3fn, fp8_e5m2 or int8)`,
  );
}

/** Number of scales of a scheme for a shape: 1, tokenCount, headCount (0 for none). */
function scaleCount(scheme: KvScaleScheme, shape: KvPartShape): number {
  return scheme === "per_tensor"
    ? 1
    : scheme === "per_token"
      ? shape.tokenCount
      : scheme === "per_head"
        ? shape.headCount
        : 0;
}

/** Calls `row(rowIndex, scaleIndex)` for each head row; rows are `headDim` contiguous elements. */
function rowScaleIndex(scheme: KvScaleScheme, shape: KvPartShape): Int32Array {
  const { tokenCount: t, headCount: h, layout } = shape;
  const rows = new Int32Array(t * h);
  for (let r = 0; r < rows.length; r++) {
    const token = layout === "nhd" ? Math.floor(r / h) : r % t;
    const head = layout === "nhd" ? r % h : Math.floor(r / t);
    rows[r] = scheme === "per_token" ? token : scheme === "per_head" ? head : 0;
  }
  return rows;
}

function checkShape(values: { length: number }, shape: KvPartShape): void {
  const { tokenCount: t, headCount: h, headDim: d } = shape;
  if (![t, h, d].every((x) => Number.isSafeInteger(x) && x >= 1)) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `shape ${t}x${h}x${d}: expected integers >= 1 (tokens x heads x dim)`,
    );
  }
  if (shape.layout !== "nhd" && shape.layout !== "hnd") {
    throw new KvFormatError(
      "UNSUPPORTED_LAYOUT",
      `layout ${JSON.stringify(shape.layout)}, expected "nhd" or "hnd"`,
    );
  }
  const n = t * h * d;
  if (values.length !== n) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `${values.length} elements, expected ${shape.tokenCount}x${shape.headCount}x${shape.headDim} = ${n}`,
    );
  }
}

/** Smallest positive f32 (2^-149): the scale of groups whose `absmax / qmax` underflows f32. */
const MIN_SCALE = 2 ** -149;

/**
 * Computes scales so that `max |x| / scale` equals the dtype's max (448, 57344, 127) per group
 * (whole tensor, token or head); an all-zero or non-finite group gets scale 1, and a group so small
 * that `absmax / qmax` rounds to 0 in f32 gets the smallest positive f32 (every scale is a finite
 * f32 > 0). "none" returns a single scale 1 (fp8 only; int8 requires scales).
 */
export function computeKvScales(values: Float32Array, options: QuantizeKvOptions): Float32Array {
  checkShape(values, options.shape);
  const qmax = quantMaxOf(options.dtype);
  if (options.scaleScheme === "none") {
    if (options.dtype === "int8")
      throw new KvFormatError("INVALID_DESCRIPTOR", "int8 requires a scale scheme other than none");
    return Float32Array.of(1);
  }
  const count = scaleCount(options.scaleScheme, options.shape);
  const amax = new Float32Array(count);
  const rows = rowScaleIndex(options.scaleScheme, options.shape);
  const d = options.shape.headDim;
  for (let r = 0; r < rows.length; r++) {
    const s = rows[r] as number;
    let m = amax[s] as number;
    for (let i = r * d, end = i + d; i < end; i++) {
      const v = Math.abs(values[i] as number);
      if (v > m) m = v;
    }
    amax[s] = m;
  }
  for (let s = 0; s < count; s++) {
    const m = amax[s] as number;
    amax[s] = m > 0 && Number.isFinite(m) ? Math.max(Math.fround(m / qmax), MIN_SCALE) : 1;
  }
  return amax;
}

/**
 * Quantises f32 values of one part: `q = cast(f32(x / scale))` with round-to-nearest-even and
 * saturation to the dtype's max (the scaled value is rounded to f32 first, as PyTorch computes it).
 * Returns new arrays; `options.scales` when given is used (and returned) as is, and must hold
 * finite values > 0 (OUT_OF_RANGE otherwise: a zero scale would turn zeros into NaN).
 */
export function quantizeKv(values: Float32Array, options: QuantizeKvOptions): QuantizedKv {
  checkShape(values, options.shape);
  const scales = options.scales ?? computeKvScales(values, options);
  const expected =
    options.scaleScheme === "none" ? 1 : scaleCount(options.scaleScheme, options.shape);
  if (scales.length !== expected) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `${scales.length} scales, expected ${expected} for ${options.scaleScheme}`,
    );
  }
  const bad = scales.findIndex((scale) => !(scale > 0 && Number.isFinite(scale)));
  if (bad >= 0) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `scale ${bad} is ${scales[bad]}, expected a finite number > 0`,
      { field: "scales" },
    );
  }
  const rows = rowScaleIndex(
    options.scaleScheme === "none" ? "per_tensor" : options.scaleScheme,
    options.shape,
  );
  const d = options.shape.headDim;
  const data = new Uint8Array(values.length);
  const scratch = new Float32Array(d);
  const scratchBits = new Uint32Array(scratch.buffer);
  for (let r = 0; r < rows.length; r++) {
    const scale = scales[rows[r] as number] as number;
    const base = r * d;
    for (let i = 0; i < d; i++) scratch[i] = (values[base + i] as number) / scale;
    const out = data.subarray(base, base + d);
    if (options.dtype === "fp8_e4m3fn") encodeE4m3fn(scratchBits, out, d, true);
    else if (options.dtype === "fp8_e5m2") encodeE5m2(scratchBits, out, d, true);
    else if (options.dtype === "int8") encodeInt8(scratch, out, d);
    else quantMaxOf(options.dtype);
  }
  return { data, scales };
}

/** Dequantises one part: `x = q * scale` in f32. Returns a new Float32Array. */
export function dequantizeKv(
  data: Uint8Array,
  scales: Float32Array,
  options: QuantizeKvOptions,
): Float32Array {
  checkShape(data, options.shape);
  quantMaxOf(options.dtype);
  const scheme = options.scaleScheme === "none" ? "per_tensor" : options.scaleScheme;
  const expected = scaleCount(scheme, options.shape);
  if (scales.length !== expected) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `${scales.length} scales, expected ${expected} for ${options.scaleScheme}`,
    );
  }
  const rows = rowScaleIndex(scheme, options.shape);
  const d = options.shape.headDim;
  const out = new Float32Array(data.length);
  const table =
    options.dtype === "fp8_e4m3fn"
      ? e4m3fnTable()
      : options.dtype === "fp8_e5m2"
        ? e5m2Table()
        : undefined;
  const i8 = new Int8Array(data.buffer, data.byteOffset, data.byteLength);
  for (let r = 0; r < rows.length; r++) {
    const scale = scales[rows[r] as number] as number;
    const base = r * d;
    if (table)
      for (let i = base; i < base + d; i++) out[i] = (table[data[i] as number] as number) * scale;
    else for (let i = base; i < base + d; i++) out[i] = (i8[i] as number) * scale;
  }
  return out;
}
