import { Code, OpalError } from "@opal/core";
import type { KvNumerics } from "@opal/kv";
import { type OpticalNoise, opticalNoiseForBound } from "./optical-noise";

/**
 * How a simulated device computes: effective throughput, power and numerics. The figures are
 * stated assumptions (docs/guides/mock.md explains each), adjustable per device.
 */
export interface MockProfile {
  readonly name: string;
  /** Effective dense throughput on prefill in TFLOP/s; 0 means "instant" (no simulated delay). */
  readonly effectiveTflops: number;
  /** Power while computing, in watts. */
  readonly activePowerWatts: number;
  /** Power while idle, in watts. */
  readonly idlePowerWatts: number;
  /** Numerics provenance copied into every descriptor. */
  readonly numerics: KvNumerics;
  /**
   * Analog matmul noise added to the K and V of reference-model prefills (synthetic shapes are
   * not computed, so they stay noiseless); absent: exact values.
   */
  readonly noise?: OpticalNoise;
}

/** Names of the built-in profiles. */
export type MockProfileName = "iris-nova" | "h100" | "instant" | "optical";

/** The `optical` profile's declared relative error bound by default. */
export const OPTICAL_DEFAULT_BOUND = 0.02;

/** Options of {@link opticalMockProfile}. */
export interface OpticalProfileOptions {
  /** Declared relative error bound, in (0, 1); the absolute bound equals it; default 0.02. */
  readonly maxRelError?: number;
  /** Noise seed, 0..2^32-1; default 0. */
  readonly seed?: number;
}

/**
 * The `optical` profile: iris-nova's timing and power with noisy numerics. It declares
 * `max_abs_error = max_rel_error = bound` and produces K and V perturbed by
 * {@link opticalNoiseForBound}(bound, seed): readout and shot noise and an ADC sized to the bound,
 * clipped to it. INVALID_ARGUMENT for a bound outside (0, 1) or a bad seed.
 */
export function opticalMockProfile(options: OpticalProfileOptions = {}): MockProfile {
  const bound = options.maxRelError ?? OPTICAL_DEFAULT_BOUND;
  const noise = opticalNoiseForBound(bound, options.seed ?? 0);
  return {
    ...PROFILES["iris-nova"],
    name: "optical",
    numerics: {
      deviceKind: "optical",
      precisionPath: `optical matmul, ${noise.adcBits}-bit ADC per row, f32 digital accumulate`,
      bitExact: false,
      maxAbsError: bound,
      maxRelError: bound,
    },
    noise,
  };
}

const PROFILES: Readonly<Record<Exclude<MockProfileName, "optical">, MockProfile>> = {
  // An optical prefill server in the style of Lumai's Iris Nova: matrix multiplication in free-space
  // optics with digital accumulation. Assumed: 2,000 effective TFLOP/s on prefill at 1,200 W,
  // 250 W idle, and a declared error bound of 2e-2 absolute / 5e-2 relative against an exact
  // reference (the mock computes exactly, which lies within any bound).
  "iris-nova": {
    name: "iris-nova",
    effectiveTflops: 2000,
    activePowerWatts: 1200,
    idlePowerWatts: 250,
    numerics: {
      deviceKind: "optical",
      precisionPath: "optical matmul (8-bit effective), f32 digital accumulate",
      bitExact: false,
      maxAbsError: 2e-2,
      maxRelError: 5e-2,
    },
  },
  // An NVIDIA H100 SXM as a prefill baseline: 989 TFLOP/s dense BF16 peak at 50% model FLOPs
  // utilisation on prefill, 700 W board power, 100 W idle (public figures).
  h100: {
    name: "h100",
    effectiveTflops: 495,
    activePowerWatts: 700,
    idlePowerWatts: 100,
    numerics: {
      deviceKind: "digital",
      precisionPath: "bf16 tensor cores, f32 accumulate",
      bitExact: false,
      maxAbsError: 1e-2,
      maxRelError: 1e-2,
    },
  },
  // No simulated delay and the exact reference numerics: for tests.
  instant: {
    name: "instant",
    effectiveTflops: 0,
    activePowerWatts: 0,
    idlePowerWatts: 0,
    numerics: {
      deviceKind: "reference",
      precisionPath: "f32 CPU reference",
      bitExact: true,
      maxAbsError: 0,
      maxRelError: 0,
    },
  },
};

/** The names of the built-in profiles. */
export function toMockProfileNames(): MockProfileName[] {
  return [...(Object.keys(PROFILES) as MockProfileName[]), "optical"];
}

/** A built-in profile by name; INVALID_ARGUMENT for an unknown name. */
export function mockProfile(name: string): MockProfile {
  if (name === "optical") return opticalMockProfile();
  const profile = (PROFILES as Record<string, MockProfile>)[name];
  if (!profile) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `unknown mock profile ${JSON.stringify(name)} (expected one of ${toMockProfileNames().join(", ")})`,
    );
  }
  return profile;
}

/** Simulated device time for `flops` floating-point operations under `profile`, in microseconds. */
export function simulatedTimeUs(profile: MockProfile, flops: number, throttle = 1): number {
  if (profile.effectiveTflops <= 0) return 0;
  return (flops / (profile.effectiveTflops * 1e12 * throttle)) * 1e6;
}
