import { describe, expect, it } from "vitest";
import { computeKvScales, dequantizeKv, type KvPartShape, quantizeKv } from "./index";

const shape: KvPartShape = { tokenCount: 5, headCount: 3, headDim: 4, layout: "nhd" };

function values(s: KvPartShape): Float32Array {
  const out = new Float32Array(s.tokenCount * s.headCount * s.headDim);
  for (let i = 0; i < out.length; i++) out[i] = Math.sin(i * 1.7) * (1 + (i % 13));
  return out;
}

describe("quantizeKv / dequantizeKv", () => {
  for (const dtype of ["fp8_e4m3fn", "fp8_e5m2", "int8"] as const) {
    for (const scaleScheme of ["per_tensor", "per_token", "per_head"] as const) {
      for (const layout of ["nhd", "hnd"] as const) {
        it(`${dtype} ${scaleScheme} ${layout}: scales map each group's absmax to the dtype max, error within half a step`, () => {
          const s = { ...shape, layout };
          const x = values(s);
          const { data, scales } = quantizeKv(x, { dtype, scaleScheme, shape: s });
          expect(scales.length).toBe(
            scaleScheme === "per_tensor" ? 1 : scaleScheme === "per_token" ? 5 : 3,
          );
          const y = dequantizeKv(data, scales, { dtype, scaleScheme, shape: s });
          const relStep = dtype === "fp8_e4m3fn" ? 2 ** -4 : dtype === "fp8_e5m2" ? 2 ** -3 : 0;
          for (let i = 0; i < x.length; i++) {
            const row = Math.floor(i / 4);
            const token = layout === "nhd" ? Math.floor(row / 3) : row % 5;
            const head = layout === "nhd" ? row % 3 : Math.floor(row / 5);
            const scale =
              scales[
                scaleScheme === "per_tensor" ? 0 : scaleScheme === "per_token" ? token : head
              ]!;
            const bound =
              dtype === "int8" ? scale / 2 : Math.max(Math.abs(x[i]!) * relStep, scale * 2 ** -9);
            expect(Math.abs(y[i]! - x[i]!)).toBeLessThanOrEqual(bound * 1.0001);
          }
          const max = dtype === "fp8_e4m3fn" ? 448 : dtype === "fp8_e5m2" ? 57344 : 127;
          const amax = Math.max(...Array.from(x, Math.abs));
          if (scaleScheme === "per_tensor") expect(scales[0]).toBeCloseTo(amax / max, 5);
        });
      }
    }
  }

  it("uses given scales, gives all-zero groups scale 1 and rejects a wrong scale count", () => {
    const x = new Float32Array(60);
    expect(
      Array.from(computeKvScales(x, { dtype: "int8", scaleScheme: "per_head", shape })),
    ).toEqual([1, 1, 1]);
    const given = Float32Array.of(0.5);
    expect(
      quantizeKv(x.fill(1), { dtype: "int8", scaleScheme: "per_tensor", shape, scales: given })
        .data[0],
    ).toBe(2);
    expect(() =>
      quantizeKv(x, { dtype: "int8", scaleScheme: "per_token", shape, scales: given }),
    ).toThrow(/1 scales, expected 5/);
    expect(() =>
      quantizeKv(new Float32Array(3), { dtype: "int8", scaleScheme: "per_token", shape }),
    ).toThrow(/3 elements/);
    expect(() => quantizeKv(x, { dtype: "bf16", scaleScheme: "per_token", shape })).toThrow(
      /not quantised/,
    );
  });

  for (const dtype of ["fp8_e4m3fn", "fp8_e5m2", "int8"] as const) {
    it(`${dtype}: a group whose absmax / max underflows f32 still gets a positive scale (no NaN)`, () => {
      const s: KvPartShape = { tokenCount: 1, headCount: 1, headDim: 4, layout: "nhd" };
      const x = Float32Array.of(2 ** -146, 0, -(2 ** -147), 2 ** -149); // f32 subnormals
      const options = { dtype, scaleScheme: "per_tensor", shape: s } as const;
      const { data, scales } = quantizeKv(x, options);
      expect(scales[0]).toBeGreaterThan(0);
      const y = dequantizeKv(data, scales, options);
      expect(Array.from(y).every(Number.isFinite)).toBe(true);
      expect(y[1]).toBe(0);
      expect(Math.sign(y[0]!)).toBe(1);
      expect(Math.sign(y[2]!)).toBe(-1);
    });
  }

  it("rejects given scales that are 0, negative or not finite, and malformed shapes", () => {
    const x = new Float32Array(60).fill(1);
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() =>
        quantizeKv(x, {
          dtype: "fp8_e4m3fn",
          scaleScheme: "per_tensor",
          shape,
          scales: Float32Array.of(bad),
        }),
      ).toThrow(/scale 0 is .*expected a finite number > 0/);
    }
    const negative = { tokenCount: -5, headCount: -3, headDim: 4, layout: "nhd" } as const;
    expect(() =>
      quantizeKv(x, { dtype: "int8", scaleScheme: "per_token", shape: negative }),
    ).toThrow(/expected integers >= 1/);
    const sideways = { ...shape, layout: "tnd" as never };
    expect(() =>
      computeKvScales(x, { dtype: "int8", scaleScheme: "per_head", shape: sideways }),
    ).toThrow(/layout "tnd"/);
  });
});
