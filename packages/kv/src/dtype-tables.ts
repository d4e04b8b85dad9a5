/**
 * Lazily built decode tables: fp8 (256 entries) and f16 (65536 entries) to f32. Built on first use,
 * never at import time; exact because every fp8/f16 value is representable in f32.
 */
let e4m3: Float32Array | undefined;
let e5m2: Float32Array | undefined;
let f16: Float32Array | undefined;

function decodeMinifloat(
  bits: number,
  expBits: number,
  mantBits: number,
  finiteNan: boolean,
): number {
  const sign = bits >> (expBits + mantBits) ? -1 : 1;
  const exp = (bits >> mantBits) & ((1 << expBits) - 1);
  const mant = bits & ((1 << mantBits) - 1);
  const bias = (1 << (expBits - 1)) - 1;
  const maxExp = (1 << expBits) - 1;
  if (finiteNan) {
    if (exp === maxExp && mant === (1 << mantBits) - 1) return Number.NaN;
  } else if (exp === maxExp) {
    return mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  }
  if (exp === 0) return sign * mant * 2 ** (1 - bias - mantBits);
  return sign * (1 + mant / (1 << mantBits)) * 2 ** (exp - bias);
}

/** Gives the NaN entries of a table the sign of their pattern (JS NaN values lose it). */
function keepNanSign(table: Float32Array, width: number): void {
  const bits = new Uint32Array(table.buffer);
  for (let i = 0; i < table.length; i++) {
    if (Number.isNaN(table[i])) bits[i] = (i >> (width - 1) ? 0x80000000 : 0) | 0x7fc00000;
  }
}

/** fp8 e4m3fn bits -> f32 (no infinities; S.1111.111 is NaN; max 448). */
export function e4m3fnTable(): Float32Array {
  if (!e4m3) {
    e4m3 = new Float32Array(256);
    for (let i = 0; i < 256; i++) e4m3[i] = decodeMinifloat(i, 4, 3, true);
    keepNanSign(e4m3, 8);
  }
  return e4m3;
}

/** fp8 e5m2 bits -> f32 (IEEE-like: infinities and NaNs; max 57344). */
export function e5m2Table(): Float32Array {
  if (!e5m2) {
    e5m2 = new Float32Array(256);
    for (let i = 0; i < 256; i++) e5m2[i] = decodeMinifloat(i, 5, 2, false);
    keepNanSign(e5m2, 8);
  }
  return e5m2;
}

/** IEEE binary16 bits -> f32. NaNs keep sign and payload (quiet bit set as f32 conversion does). */
export function f16Table(): Float32Array {
  if (!f16) {
    f16 = new Float32Array(65_536);
    const bits = new Uint32Array(f16.buffer);
    for (let h = 0; h < 65_536; h++) {
      const exp = (h >> 10) & 0x1f;
      if (exp === 0x1f && (h & 0x3ff) !== 0) {
        // NaN: sign, all-ones exponent, payload shifted, quiet bit set.
        bits[h] = ((h & 0x8000) << 16) | 0x7f800000 | 0x400000 | ((h & 0x3ff) << 13);
      } else {
        f16[h] = decodeMinifloat(h, 5, 10, false);
      }
    }
  }
  return f16;
}
