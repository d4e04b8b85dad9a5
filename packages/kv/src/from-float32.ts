import type { KvDtype } from "./descriptor";
import { KvFormatError } from "./kv-format-error";

/** Options of {@link fromFloat32}. */
export interface FromFloat32Options {
  /** Destination with room for every element's bytes; default a new Uint8Array. */
  readonly into?: Uint8Array;
  /**
   * false (default) follows PyTorch's casts: f16 and bf16 round finite values beyond their range
   * to ±inf; fp8 as `tensor.to(float8_*)`: e4m3fn turns magnitudes above 464 (past the midpoint
   * after 448) and ±inf into NaN, e5m2 turns magnitudes at or above 61440 into ±inf.
   * true is what a device must do (PF-22): finite values beyond the range clamp to ±max (f16
   * 65504, bf16 0x7F7F ≈ 3.39e38; fp8 also clamps ±inf, the OCP "saturate" mode: 448 / 57344);
   * NaN stays NaN.
   */
  readonly saturate?: boolean;
}

/**
 * Narrows f32 values to `dtype` with IEEE round-to-nearest-even, bit-exact with PyTorch's casts:
 * f16 (overflow to ±inf, NaN -> sign|0x7E00), bf16 (any NaN -> 0x7FC0), fp8 e4m3fn and e5m2 (see
 * `saturate`), int8 (round half to even, clamp to [-128, 127], NaN -> 0). Returns `options.into`
 * when given (a view of the written bytes), else a new array.
 */
export function fromFloat32(
  src: Float32Array,
  dtype: KvDtype,
  options: FromFloat32Options = {},
): Uint8Array {
  const size = dtype === "f32" ? 4 : dtype === "f16" || dtype === "bf16" ? 2 : 1;
  const n = src.length;
  const out = options.into ?? new Uint8Array(n * size);
  if (out.byteLength < n * size) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `destination holds ${out.byteLength} bytes, expected at least ${n * size}`,
    );
  }
  const bits = new Uint32Array(src.buffer, src.byteOffset, n);
  switch (dtype) {
    case "f32":
      out.set(new Uint8Array(src.buffer, src.byteOffset, n * 4));
      break;
    case "f16":
      encodeF16(bits, writableU16(out, n), n, options.saturate ?? false);
      break;
    case "bf16":
      encodeBf16(bits, writableU16(out, n), n, options.saturate ?? false);
      break;
    case "fp8_e4m3fn":
      encodeE4m3fn(bits, out, n, options.saturate ?? false);
      break;
    case "fp8_e5m2":
      encodeE5m2(bits, out, n, options.saturate ?? false);
      break;
    case "int8":
      encodeInt8(src, out, n);
      break;
    default:
      throw new KvFormatError("UNSUPPORTED_DTYPE", `dtype ${String(dtype)} is not supported`);
  }
  return out.byteLength === n * size ? out : out.subarray(0, n * size);
}

function writableU16(out: Uint8Array, n: number): Uint16Array {
  if (out.byteOffset % 2 !== 0) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `destination byteOffset ${out.byteOffset} is not 2-byte aligned`,
    );
  }
  return new Uint16Array(out.buffer, out.byteOffset, n);
}

/**
 * Round-to-nearest-even of a positive f32 (bits `a`, exponent >= 1 or 0) below a format's smallest
 * normal into that format's subnormal grid of step 2^-`k` (k: 24 f16, 9 e4m3fn, 16 e5m2).
 */
function subnormal(a: number, k: number): number {
  const e = a >>> 23;
  const shift = 150 - k - e;
  if (shift > 24) return 0;
  const m = e === 0 ? a & 0x7fffff : (a & 0x7fffff) | 0x800000;
  let r = m >>> shift;
  const rem = m - (r << shift);
  const half = 1 << (shift - 1);
  if (rem > half || (rem === half && (r & 1) === 1)) r++;
  return r;
}

/** f32 bits -> f16 bits, RNE; with `saturate`, finite values beyond ±65504 become ±65504. */
export function encodeF16(bits: Uint32Array, out: Uint16Array, n: number, saturate = false): void {
  for (let i = 0; i < n; i++) {
    const x = bits[i] as number;
    const sign = (x >>> 16) & 0x8000;
    const a = x & 0x7fffffff;
    let h: number;
    if (a >= 0x477ff000) {
      // >= 65520 rounds to infinity (65504 when saturating a finite value); NaN -> 0x7E00.
      h = a > 0x7f800000 ? 0x7e00 : saturate && a < 0x7f800000 ? 0x7bff : 0x7c00;
    } else if (a >= 0x38800000) {
      h = (a - 0x38000000 + 0xfff + ((a >>> 13) & 1)) >>> 13;
    } else {
      h = subnormal(a, 24);
    }
    out[i] = sign | h;
  }
}

/**
 * f32 bits -> bf16 bits, RNE; any NaN -> 0x7FC0 (as c10::BFloat16); with `saturate`, a finite value
 * that would round to ±inf becomes ±0x7F7F.
 */
export function encodeBf16(bits: Uint32Array, out: Uint16Array, n: number, saturate = false): void {
  for (let i = 0; i < n; i++) {
    const x = bits[i] as number;
    const a = x & 0x7fffffff;
    if (a > 0x7f800000) out[i] = 0x7fc0;
    else if (saturate && a >= 0x7f7f8000 && a < 0x7f800000) out[i] = ((x >>> 16) & 0x8000) | 0x7f7f;
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
}

/** f32 bits -> fp8 e4m3fn, RNE (PyTorch rules unless `saturate`). */
export function encodeE4m3fn(
  bits: Uint32Array,
  out: Uint8Array,
  n: number,
  saturate: boolean,
): void {
  for (let i = 0; i < n; i++) {
    const x = bits[i] as number;
    const sign = (x >>> 24) & 0x80;
    const a = x & 0x7fffffff;
    let q: number;
    if (a >= 0x43f00000) {
      // >= 480 (or inf/NaN): NaN, unless saturating a non-NaN.
      q = saturate && a <= 0x7f800000 ? 0x7e : 0x7f;
    } else if (a >= 0x3c800000) {
      q = (a - 0x3c000000 + 0x7ffff + ((a >>> 20) & 1)) >>> 20;
      if (saturate && q > 0x7e) q = 0x7e;
    } else {
      q = subnormal(a, 9);
    }
    out[i] = sign | q;
  }
}

/** f32 bits -> fp8 e5m2, RNE (PyTorch rules unless `saturate`). */
export function encodeE5m2(bits: Uint32Array, out: Uint8Array, n: number, saturate: boolean): void {
  for (let i = 0; i < n; i++) {
    const x = bits[i] as number;
    const sign = (x >>> 24) & 0x80;
    const a = x & 0x7fffffff;
    let q: number;
    if (a > 0x7f800000) {
      q = 0x7f;
    } else if (a >= 0x47800000) {
      q = saturate ? 0x7b : 0x7c;
    } else if (a >= 0x38800000) {
      q = (a - 0x38000000 + 0xfffff + ((a >>> 21) & 1)) >>> 21;
      if (saturate && q > 0x7b) q = 0x7b;
    } else {
      q = subnormal(a, 16);
    }
    out[i] = sign | q;
  }
}

/** f32 -> int8: round half to even, clamp to [-128, 127], NaN -> 0. */
export function encodeInt8(src: Float32Array, out: Uint8Array, n: number): void {
  const i8 = new Int8Array(out.buffer, out.byteOffset, n);
  for (let i = 0; i < n; i++) {
    const v = src[i] as number;
    let r = Math.round(v);
    if (r - v === 0.5 && (r & 1) !== 0) r -= 1;
    // NaN stays NaN here and an Int8Array stores it as 0.
    i8[i] = Math.min(127, Math.max(-128, r));
  }
}
