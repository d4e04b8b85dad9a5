import { describe, expect, it } from "vitest";
import {
  applyOpticalNoise,
  type ErrorBound,
  type OpticalNoise,
  opticalMockProfile,
  opticalNoiseForBound,
} from "../src/index";

const ROW = 32;

/** `tokens` rows of `ROW` elements, deterministic, with values of about unit RMS. */
function rows(tokens: number, scale = 1): Float32Array {
  return Float32Array.from(
    { length: tokens * ROW },
    (_, i) => scale * Math.sin(i * 1.7 + 0.3) * 1.4,
  );
}

function perturb(values: Float32Array, noise: OpticalNoise, bound: ErrorBound, tokens: number) {
  const out = values.slice();
  const clipped = applyOpticalNoise(
    out,
    { layer: 1, part: 0, numTokens: tokens, rowLength: ROW },
    noise,
    bound,
  );
  return { out, clipped, errors: Array.from(out, (x, i) => x - values[i]!) };
}

const LOOSE: ErrorBound = { maxAbsError: 10, maxRelError: 10 };

describe("optical noise", () => {
  it("sizes the noise to the bound: 8-bit ADC and readout/shot of bound/8 at 0.02", () => {
    expect(opticalNoiseForBound(0.02, 3)).toEqual({
      seed: 3,
      readoutSigma: 0.0025,
      shotSigma: 0.0025,
      adcBits: 8,
    });
    expect(opticalNoiseForBound(0.001).adcBits).toBe(12);
    expect(() => opticalNoiseForBound(0)).toThrow(/between|\(0, 1\)/);
    expect(() => opticalNoiseForBound(0.02, -1)).toThrow(/seed/);
  });

  it("is seeded and prefix-consistent: the same seed gives the same values, another seed others", () => {
    const noise = opticalNoiseForBound(0.02, 11);
    const bound = { maxAbsError: 0.02, maxRelError: 0.02 };
    const long = perturb(rows(40), noise, bound, 40).out;
    const short = perturb(rows(40).subarray(0, 10 * ROW), noise, bound, 10).out;
    expect(short).toEqual(long.subarray(0, 10 * ROW));
    const other = perturb(rows(40), { ...noise, seed: 12 }, bound, 40).out;
    expect(other).not.toEqual(long);
  });

  it("never exceeds the bound when clipping (the default), and exceeds it without", () => {
    const noise: OpticalNoise = { seed: 1, readoutSigma: 0.05, shotSigma: 0.05, adcBits: 6 };
    const bound = { maxAbsError: 0.01, maxRelError: 0.01 };
    const values = rows(64);
    const clipped = perturb(values, noise, bound, 64);
    expect(clipped.clipped).toBeGreaterThan(0);
    clipped.errors.forEach((e, i) => {
      expect(Math.abs(e)).toBeLessThanOrEqual(
        bound.maxAbsError + bound.maxRelError * Math.abs(values[i]!) + 1e-6,
      );
    });
    const free = perturb(values, { ...noise, clipToBound: false }, bound, 64);
    expect(free.clipped).toBe(0);
    expect(
      free.errors.some(
        (e, i) => Math.abs(e) > bound.maxAbsError + bound.maxRelError * Math.abs(values[i]!),
      ),
    ).toBe(true);
  });

  it("scales with the row's signal (readout noise relative to the row RMS), not a fixed floor", () => {
    const noise: OpticalNoise = { seed: 5, readoutSigma: 0.01, shotSigma: 0, adcBits: 24 };
    const rms = (e: number[]) => Math.sqrt(e.reduce((s, x) => s + x * x, 0) / e.length);
    const small = rms(perturb(rows(64, 1), noise, LOOSE, 64).errors);
    const large = rms(perturb(rows(64, 10), noise, LOOSE, 64).errors);
    expect(small).toBeGreaterThan(0.005);
    expect(small).toBeLessThan(0.02);
    expect(large / small).toBeCloseTo(10, 0);
  });

  it("gives shot noise to bright elements more than to dim ones of the same row", () => {
    const noise: OpticalNoise = { seed: 9, readoutSigma: 0, shotSigma: 0.02, adcBits: 24 };
    const values = rows(256);
    const { errors } = perturb(values, noise, LOOSE, 256);
    const bright: number[] = [];
    const dim: number[] = [];
    errors.forEach((e, i) => {
      const a = Math.abs(values[i]!);
      if (a > 1.2) bright.push(e * e);
      else if (a < 0.3) dim.push(e * e);
    });
    const mean = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
    expect(mean(bright)).toBeGreaterThan(3 * mean(dim));
  });

  it("quantises like an ADC: without analog noise the error is at most half a step of the row's full scale", () => {
    const noise: OpticalNoise = { seed: 2, readoutSigma: 0, shotSigma: 0, adcBits: 4 };
    const values = rows(8);
    const { out, errors } = perturb(values, noise, LOOSE, 8);
    for (let t = 0; t < 8; t++) {
      const row = values.subarray(t * ROW, (t + 1) * ROW);
      const step = Math.max(...Array.from(row, Math.abs)) / 8;
      for (let i = 0; i < ROW; i++) {
        expect(Math.abs(errors[t * ROW + i]!)).toBeLessThanOrEqual(step / 2 + 1e-6);
        const levels = out[t * ROW + i]! / step;
        expect(Math.abs(levels - Math.round(levels))).toBeLessThan(1e-3);
      }
    }
  });

  it("the optical profile declares its bound, kind and ADC in the numerics it reports", () => {
    const profile = opticalMockProfile({ maxRelError: 0.05, seed: 4 });
    expect(profile.numerics).toEqual({
      deviceKind: "optical",
      precisionPath: "optical matmul, 6-bit ADC per row, f32 digital accumulate",
      bitExact: false,
      maxAbsError: 0.05,
      maxRelError: 0.05,
    });
    expect(profile.noise).toEqual(opticalNoiseForBound(0.05, 4));
  });
});
