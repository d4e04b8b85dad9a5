import type { KvDtype } from "./descriptor";
import { e4m3fnTable, e5m2Table, f16Table } from "./dtype-tables";
import { KvFormatError } from "./kv-format-error";

/** Options of {@link toFloat32}. */
export interface ToFloat32Options {
  /** Destination with room for every element; default a new Float32Array. */
  readonly into?: Float32Array;
}

/**
 * Widens `src` (little-endian elements of `dtype`) to f32, exactly (every f16, bf16, fp8 and int8
 * value is an f32). No scales are applied: fp8/int8 give the raw quantised values; see
 * `dequantizeKv` for scaled data. Returns `options.into` when given (it must hold
 * `src.byteLength / dtypeByteSize` elements), else a new array. For f32 input the result is a
 * copy, never a view.
 */
export function toFloat32(
  src: Uint8Array,
  dtype: KvDtype,
  options: ToFloat32Options = {},
): Float32Array {
  const size = dtype === "f32" ? 4 : dtype === "f16" || dtype === "bf16" ? 2 : 1;
  if (src.byteLength % size !== 0) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `${src.byteLength} bytes is not a whole number of ${dtype} elements`,
    );
  }
  const n = src.byteLength / size;
  const out = options.into ?? new Float32Array(n);
  if (out.length < n) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `destination holds ${out.length} elements, expected at least ${n}`,
    );
  }
  switch (dtype) {
    case "f32": {
      new Uint8Array(out.buffer, out.byteOffset, n * 4).set(src);
      return out;
    }
    case "f16": {
      const table = f16Table();
      const u16 = u16View(src);
      for (let i = 0; i < n; i++) out[i] = table[u16[i] as number] as number;
      return out;
    }
    case "bf16": {
      const u16 = u16View(src);
      const o32 = new Uint32Array(out.buffer, out.byteOffset, n);
      for (let i = 0; i < n; i++) o32[i] = (u16[i] as number) << 16;
      return out;
    }
    case "fp8_e4m3fn":
    case "fp8_e5m2": {
      const table = dtype === "fp8_e4m3fn" ? e4m3fnTable() : e5m2Table();
      for (let i = 0; i < n; i++) out[i] = table[src[i] as number] as number;
      return out;
    }
    case "int8": {
      const i8 = new Int8Array(src.buffer, src.byteOffset, n);
      for (let i = 0; i < n; i++) out[i] = i8[i] as number;
      return out;
    }
    default:
      throw new KvFormatError("UNSUPPORTED_DTYPE", `dtype ${String(dtype)} is not supported`);
  }
}

/** A Uint16Array over `src` (a view when 2-byte aligned, else over a copy). */
export function u16View(src: Uint8Array): Uint16Array {
  if (src.byteOffset % 2 === 0)
    return new Uint16Array(src.buffer, src.byteOffset, src.byteLength >> 1);
  return new Uint16Array(src.slice().buffer);
}
