import { getFloat16, setFloat16 } from "@petamoriken/float16";
import { describe, expect, it } from "vitest";
import { fromFloat32, toFloat32 } from "./index";

const f32 = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0] as number;
const bitsOf = (x: number) => new Uint32Array(Float32Array.of(x).buffer)[0] as number;
const all8 = Uint8Array.from({ length: 256 }, (_, i) => i);
const all16 = new Uint8Array(Uint16Array.from({ length: 65536 }, (_, i) => i).buffer);

function encode1(x: number, dtype: "fp8_e4m3fn" | "fp8_e5m2", saturate = false): number {
  return fromFloat32(Float32Array.of(x), dtype, { saturate })[0] as number;
}
function f16Bits(x: number): number {
  return new Uint16Array(fromFloat32(Float32Array.of(x), "f16").buffer)[0] as number;
}

describe("fp8 e4m3fn (OCP, PyTorch float8_e4m3fn)", () => {
  const table = toFloat32(all8, "fp8_e4m3fn");
  it("decodes the spec's values", () => {
    expect(table[0x7e]).toBe(448);
    expect(table[0xfe]).toBe(-448);
    expect(table[0x08]).toBe(2 ** -6); // min normal
    expect(table[0x01]).toBe(2 ** -9); // min subnormal
    expect(table[0x07]).toBe(0.875 * 2 ** -6); // max subnormal
    expect(table[0x38]).toBe(1);
    expect(table[0x80]).toBe(-0);
    expect(Number.isNaN(table[0x7f])).toBe(true);
    expect(Number.isNaN(table[0xff])).toBe(true);
    expect(Array.from(table).filter((v) => !Number.isFinite(v)).length).toBe(2); // no infinities
  });

  it("round-trips every bit pattern", () => {
    expect(Array.from(fromFloat32(table, "fp8_e4m3fn"))).toEqual(Array.from(all8));
  });

  it("rounds to nearest even at every midpoint and follows PyTorch on overflow", () => {
    for (let i = 0; i < 0x7e; i++) {
      const lo = table[i] as number;
      const hi = table[i + 1] as number;
      const mid = (lo + hi) / 2;
      expect(encode1(mid, "fp8_e4m3fn")).toBe(i % 2 === 0 ? i : i + 1);
      expect(encode1(-mid, "fp8_e4m3fn")).toBe(0x80 | (i % 2 === 0 ? i : i + 1));
      expect(encode1(f32(bitsOf(mid) - 1), "fp8_e4m3fn")).toBe(i);
      expect(encode1(f32(bitsOf(mid) + 1), "fp8_e4m3fn")).toBe(i + 1);
    }
    expect(encode1(464, "fp8_e4m3fn")).toBe(0x7e); // tie to even (448)
    expect(encode1(470, "fp8_e4m3fn")).toBe(0x7f); // PyTorch: NaN past the tie
    expect(encode1(480, "fp8_e4m3fn")).toBe(0x7f);
    expect(encode1(Number.POSITIVE_INFINITY, "fp8_e4m3fn")).toBe(0x7f);
    expect(encode1(Number.NEGATIVE_INFINITY, "fp8_e4m3fn")).toBe(0xff);
    expect(encode1(Number.NaN, "fp8_e4m3fn")).toBe(0x7f);
    expect(encode1(2 ** -10, "fp8_e4m3fn")).toBe(0); // half the min subnormal ties to 0
    expect(encode1(1e-30, "fp8_e4m3fn")).toBe(0);
    expect(encode1(-0, "fp8_e4m3fn")).toBe(0x80);
  });

  it("saturates finite values and infinities to ±448 when asked", () => {
    expect(encode1(470, "fp8_e4m3fn", true)).toBe(0x7e);
    expect(encode1(1e9, "fp8_e4m3fn", true)).toBe(0x7e);
    expect(encode1(Number.NEGATIVE_INFINITY, "fp8_e4m3fn", true)).toBe(0xfe);
    expect(encode1(Number.NaN, "fp8_e4m3fn", true)).toBe(0x7f);
  });
});

describe("fp8 e5m2 (OCP, PyTorch float8_e5m2)", () => {
  const table = toFloat32(all8, "fp8_e5m2");
  it("decodes the spec's values", () => {
    expect(table[0x7b]).toBe(57344);
    expect(table[0x7c]).toBe(Number.POSITIVE_INFINITY);
    expect(table[0xfc]).toBe(Number.NEGATIVE_INFINITY);
    expect(table[0x04]).toBe(2 ** -14);
    expect(table[0x01]).toBe(2 ** -16);
    expect(table[0x3c]).toBe(1);
    for (const nan of [0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff])
      expect(Number.isNaN(table[nan])).toBe(true);
  });

  it("round-trips every non-NaN bit pattern", () => {
    const back = fromFloat32(table, "fp8_e5m2");
    const expected = Array.from(all8, (i) => ((i & 0x7f) > 0x7c ? (i & 0x80) | 0x7f : i));
    expect(Array.from(back)).toEqual(expected);
  });

  it("rounds to nearest even and overflows to infinity like PyTorch", () => {
    for (let i = 0; i < 0x7b; i++) {
      const mid = ((table[i] as number) + (table[i + 1] as number)) / 2;
      expect(encode1(mid, "fp8_e5m2")).toBe(i % 2 === 0 ? i : i + 1);
      expect(encode1(f32(bitsOf(mid) + 1), "fp8_e5m2")).toBe(i + 1);
      expect(encode1(f32(bitsOf(mid) - 1), "fp8_e5m2")).toBe(i);
    }
    expect(encode1(61440, "fp8_e5m2")).toBe(0x7c); // tie goes to even = inf
    expect(encode1(61439, "fp8_e5m2")).toBe(0x7b);
    expect(encode1(1e6, "fp8_e5m2")).toBe(0x7c);
    expect(encode1(1e6, "fp8_e5m2", true)).toBe(0x7b);
    expect(encode1(Number.NEGATIVE_INFINITY, "fp8_e5m2", true)).toBe(0xfb);
    expect(encode1(Number.NaN, "fp8_e5m2")).toBe(0x7f);
  });
});

describe("f16 (IEEE binary16)", () => {
  const table = toFloat32(all16, "f16");
  it("decodes every bit pattern like @petamoriken/float16", () => {
    const view = new DataView(all16.buffer);
    const wrong: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const expected = getFloat16(view, h * 2, true);
      const ok = Number.isNaN(expected) ? Number.isNaN(table[h]) : Object.is(table[h], expected);
      if (!ok) wrong.push(h);
    }
    expect(wrong).toEqual([]);
    expect(table[0x7bff]).toBe(65504);
    expect(table[0x0001]).toBe(2 ** -24);
  });

  it("round-trips every non-NaN pattern and rounds every midpoint to even", () => {
    const back = new Uint16Array(fromFloat32(table, "f16").buffer);
    const wrong: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const nan = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (back[h] !== (nan ? (h & 0x8000) | 0x7e00 : h)) wrong.push(h);
    }
    // Every midpoint between neighbours (positive finite range), and one ulp either side of it.
    const n = 0x7bff;
    const mids = new Float32Array(3 * n);
    for (let h = 0; h < n; h++) {
      const mid = ((table[h] as number) + (table[h + 1] as number)) / 2;
      mids[3 * h] = mid;
      mids[3 * h + 1] = f32(bitsOf(mid) - 1);
      mids[3 * h + 2] = f32(bitsOf(mid) + 1);
    }
    const rounded = new Uint16Array(fromFloat32(mids, "f16").buffer);
    for (let h = 0; h < n; h++) {
      if (rounded[3 * h] !== (h % 2 === 0 ? h : h + 1)) wrong.push(h);
      if (rounded[3 * h + 1] !== h || rounded[3 * h + 2] !== h + 1) wrong.push(h);
    }
    expect(wrong).toEqual([]);
    expect(f16Bits(65519.99)).toBe(0x7bff);
    expect(f16Bits(65520)).toBe(0x7c00);
    expect(f16Bits(-1e9)).toBe(0xfc00);
  });

  it("matches @petamoriken/float16 on random f32 bit patterns", () => {
    const src = new Uint32Array(200_000);
    let x = 12345;
    for (let i = 0; i < src.length; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      src[i] = x ^ (x << 7);
    }
    const floats = new Float32Array(src.buffer);
    const ours = new Uint16Array(fromFloat32(floats, "f16").buffer);
    const view = new DataView(new ArrayBuffer(2));
    let wrong = 0;
    for (let i = 0; i < floats.length; i++) {
      const v = floats[i] as number;
      if (Number.isNaN(v)) continue;
      setFloat16(view, 0, v, true);
      if (ours[i] !== view.getUint16(0, true)) wrong++;
    }
    expect(wrong).toBe(0);
  });
});

describe("bf16", () => {
  it("widens exactly and narrows with round-to-nearest-even", () => {
    const bf = new Uint8Array(Uint16Array.of(0x3f80, 0xc000, 0x7f80, 0x0001).buffer);
    expect(Array.from(toFloat32(bf, "bf16"))).toEqual([
      1,
      -2,
      Number.POSITIVE_INFINITY,
      f32(0x00010000),
    ]);
    const narrow = (bits: number) =>
      new Uint16Array(fromFloat32(Float32Array.of(f32(bits)), "bf16").buffer)[0];
    expect(narrow(0x3f808000)).toBe(0x3f80); // tie, even stays
    expect(narrow(0x3f818000)).toBe(0x3f82); // tie, odd rounds up
    expect(narrow(0x3f808001)).toBe(0x3f81);
    expect(narrow(0x7f7fffff)).toBe(0x7f80); // overflow to inf
    expect(narrow(0xffc00001)).toBe(0x7fc0); // NaN -> canonical NaN, as c10::BFloat16
    const all = toFloat32(all16, "bf16");
    const back = new Uint16Array(fromFloat32(all, "bf16").buffer);
    let wrong = 0;
    for (let h = 0; h < 65536; h++) {
      const nan = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
      if (back[h] !== (nan ? 0x7fc0 : h)) wrong++;
    }
    expect(wrong).toBe(0);
  });
});

describe("int8 and f32", () => {
  it("rounds half to even and clamps", () => {
    const out = fromFloat32(
      Float32Array.of(0.5, 1.5, 2.5, -2.5, -3.5, 127.4, 300, -300, Number.NaN),
      "int8",
    );
    expect(Array.from(new Int8Array(out.buffer))).toEqual([0, 2, 2, -2, -4, 127, 127, -128, 0]);
    expect(Array.from(toFloat32(out, "int8"))).toEqual([0, 2, 2, -2, -4, 127, 127, -128, 0]);
  });

  it("copies f32 and writes into a given destination", () => {
    const src = Float32Array.of(1, -2, 3.5);
    const bytes = fromFloat32(src, "f32");
    const into = new Float32Array(4);
    expect(toFloat32(bytes, "f32", { into })).toBe(into);
    expect(Array.from(into)).toEqual([1, -2, 3.5, 0]);
    expect(() => toFloat32(new Uint8Array(3), "f16")).toThrow(/not a whole number/);
  });
});

describe("saturating f16 and bf16 (PF-22: no infinity for a finite input)", () => {
  const narrow = (values: number[], dtype: "f16" | "bf16", saturate: boolean) =>
    Array.from(toFloat32(fromFloat32(Float32Array.from(values), dtype, { saturate }), dtype));

  it("clamps finite f16 values beyond ±65504 to ±65504, keeps infinities and NaN", () => {
    const values = [65504, 65519, 65520, 1e6, -1e30, f32(0x7f7fffff), Infinity, -Infinity];
    expect(narrow(values, "f16", false)).toEqual([
      65504,
      65504,
      Infinity,
      Infinity,
      -Infinity,
      Infinity,
      Infinity,
      -Infinity,
    ]);
    expect(narrow(values, "f16", true)).toEqual([
      65504,
      65504,
      65504,
      65504,
      -65504,
      65504,
      Infinity,
      -Infinity,
    ]);
    expect(narrow([Number.NaN], "f16", true)[0]).toBeNaN();
  });

  it("clamps finite bf16 values that would round to infinity to ±max", () => {
    const max = f32(0x7f7f0000);
    const values = [max, f32(0x7f7f7fff), f32(0x7f7fffff), -f32(0x7f7fffff), Infinity];
    expect(narrow(values, "bf16", false)).toEqual([max, max, Infinity, -Infinity, Infinity]);
    expect(narrow(values, "bf16", true)).toEqual([max, max, max, -max, Infinity]);
  });
});
