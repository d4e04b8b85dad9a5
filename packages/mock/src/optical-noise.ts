import { Code, OpalError } from "@opal/core";

/**
 * The error model of an analog (optical) matrix multiplication, applied to the K and V a device
 * streams. Each output row `y` (one token's K or V projection, all KV heads: one matmul output
 * vector) is read as `q = ADC(y + n_readout + n_shot)`:
 *
 * - readout noise (detector thermal noise, amplifier noise): Gaussian with standard deviation
 *   `readoutSigma × rms(y)`, the same for every element of the row: analog noise is set by the
 *   row's signal level, not by the element (Rasch et al. 2023; Joshi et al. 2020);
 * - shot noise: Gaussian with standard deviation `shotSigma × sqrt(|y_i| × rms(y))`, its variance
 *   proportional to the element's own optical power, the photon-counting limit of optical
 *   multiply-accumulate (Hamerly et al. 2019; Wang et al. 2022);
 * - ADC quantisation: uniform steps of `max|y| / 2^(adcBits − 1)` over the row's full scale
 *   (Murmann 2021).
 *
 * Noise is a pure function of `seed`, the layer, the part, the token's absolute position and the
 * element: a prompt's first tokens get the same values as the prompt alone (prefix consistency)
 * and the same request gets the same bytes. docs/guides/mock.md cites the papers.
 */
export interface OpticalNoise {
  /** Seed of the noise (a 32-bit unsigned integer). */
  readonly seed: number;
  /** Readout noise, as a fraction of the row's RMS. */
  readonly readoutSigma: number;
  /** Shot noise coefficient: standard deviation `shotSigma × sqrt(|y_i| × rms(y))`. */
  readonly shotSigma: number;
  /** ADC resolution in bits (2..24) over the row's full scale `±max|y|`. */
  readonly adcBits: number;
  /**
   * Clip each element's error to the declared bound, as a device whose vendor measured its tail
   * and declared it must; default true. False models a device that exceeds its declaration.
   */
  readonly clipToBound?: boolean;
}

/** The declared per-element bound `|x − r| ≤ maxAbsError + maxRelError·|r|` (PF-37). */
export interface ErrorBound {
  readonly maxAbsError: number;
  readonly maxRelError: number;
}

/**
 * Noise sized to a declared relative bound `maxRelError` (0 < bound < 1): readout and shot noise
 * of `bound / 8` each and an ADC whose half step at a full scale of about 3 RMS is about half the
 * bound (`adcBits = 1 + round(log2(2 / bound))`: 8 bits at 0.02). With the absolute part of the
 * bound equal to `maxRelError` (activations of unit RMS), errors reach the bound only in the
 * tails, which {@link applyOpticalNoise} clips.
 */
export function opticalNoiseForBound(maxRelError: number, seed = 0): OpticalNoise {
  if (!(maxRelError > 0 && maxRelError < 1)) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `the error bound must be in (0, 1) (got ${maxRelError})`,
    );
  }
  return {
    seed: checkSeed(seed),
    readoutSigma: maxRelError / 8,
    shotSigma: maxRelError / 8,
    adcBits: Math.min(24, Math.max(2, 1 + Math.round(Math.log2(2 / maxRelError)))),
  };
}

/** Where the rows are: the layer, the part (0 = K, 1 = V) and the row shape. */
export interface NoiseSite {
  readonly layer: number;
  readonly part: 0 | 1;
  /** Rows (tokens) to perturb, from absolute position 0. */
  readonly numTokens: number;
  /** Elements per row: `numKvHeads × headDim`. */
  readonly rowLength: number;
}

/**
 * Perturbs `rows` (`[numTokens][rowLength]` f32, in place) with `noise`; with `clipToBound` (the
 * default) no element's error exceeds `bound`. Returns the number of elements whose error was
 * clipped to the bound.
 */
export function applyOpticalNoise(
  rows: Float32Array,
  site: NoiseSite,
  noise: OpticalNoise,
  bound: ErrorBound,
): number {
  const { numTokens, rowLength } = site;
  const clip = noise.clipToBound ?? true;
  const levels = 2 ** (noise.adcBits - 1);
  let clipped = 0;
  for (let t = 0; t < numTokens; t++) {
    const base = t * rowLength;
    let sumSquares = 0;
    let fullScale = 0;
    for (let i = 0; i < rowLength; i++) {
      const y = rows[base + i]!;
      sumSquares += y * y;
      fullScale = Math.max(fullScale, Math.abs(y));
    }
    if (fullScale === 0) continue;
    const rms = Math.sqrt(sumSquares / rowLength);
    const step = fullScale / levels;
    for (let i = 0; i < rowLength; i++) {
      const y = rows[base + i]!;
      const [g1, g2] = gaussianPair(noise.seed, site.layer, site.part, t, i);
      const analog =
        y + noise.readoutSigma * rms * g1 + noise.shotSigma * Math.sqrt(Math.abs(y) * rms) * g2;
      const digital = Math.max(-fullScale, Math.min(fullScale, Math.round(analog / step) * step));
      let error = digital - y;
      const limit = bound.maxAbsError + bound.maxRelError * Math.abs(y);
      if (clip && Math.abs(error) > limit) {
        error = Math.sign(error) * limit;
        clipped++;
      }
      rows[base + i] = y + error;
    }
  }
  return clipped;
}

function checkSeed(seed: number): number {
  if (!(Number.isInteger(seed) && seed >= 0 && seed <= 0xffff_ffff)) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `the noise seed must be an integer 0..4294967295 (got ${seed})`,
    );
  }
  return seed;
}

/** A 32-bit avalanche mix (the murmur3 finaliser). */
function mix(h: number): number {
  let x = h >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85eb_ca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2_ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Two independent standard normal values for one element (Box–Muller on two hashed uniforms). */
function gaussianPair(
  seed: number,
  layer: number,
  part: number,
  token: number,
  element: number,
): [number, number] {
  const key = mix(mix(mix(mix(seed ^ 0x9e37_79b9) ^ layer) ^ (part + 1)) ^ token) ^ element;
  const a = mix(key ^ 0x68e3_1da4);
  const b = mix(key ^ 0xb529_7a4d);
  const u1 = (a + 1) / 4_294_967_297; // (0, 1): never log(0)
  const u2 = b / 4_294_967_296;
  const r = Math.sqrt(-2 * Math.log(u1));
  return [r * Math.cos(2 * Math.PI * u2), r * Math.sin(2 * Math.PI * u2)];
}
