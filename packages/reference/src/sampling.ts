import { Code, OpalError, Reason } from "@opal/core";
import { createPrng } from "./prng";

/** How to pick the next token: greedy (argmax) or seeded random sampling. */
export type SamplingOptions =
  | { readonly kind: "greedy" }
  | {
      readonly kind: "seeded";
      /** Seed of the pseudo-random generator; same seed and logits, same tokens. */
      readonly seed: number;
      /** Softmax temperature; 0 means greedy. */
      readonly temperature: number;
      /** Keep only the `topK` most likely tokens; default 0 = all. */
      readonly topK?: number;
    };

/** A stateful token picker; each call advances its random state (if any). */
export interface Sampler {
  /** Picks a token id from `logits` (`[vocabSize]`). */
  sample(logits: ArrayLike<number>): number;
}

/**
 * Index of the largest logit; the lowest index wins ties. NaN logits are ignored (as numpy's
 * `nanargmax`): they are never picked, wherever they are. Throws INVALID_ARGUMENT (reason
 * `INVALID_FIELD`) when there are no logits or all of them are NaN.
 */
export function sampleGreedy(logits: ArrayLike<number>): number {
  let best = -1;
  let bestValue = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (v > bestValue || (best < 0 && v === bestValue)) {
      bestValue = v;
      best = i;
    }
  }
  if (best < 0) {
    const got = logits.length === 0 ? "0 logits" : `${logits.length} logits, all NaN`;
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `cannot sample from ${got} (expected at least one logit that is not NaN)`,
      { reason: Reason.INVALID_FIELD },
    );
  }
  return best;
}

/**
 * Creates a deterministic sampler: softmax of `logits / temperature` over the `topK` most likely
 * tokens (ties broken by lower id; `topK` 0 = all), one draw of a xoshiro128** generator seeded with
 * `seed` per token. `temperature` 0 falls back to greedy (and draws nothing).
 * Throws INVALID_ARGUMENT for a negative or non-finite temperature or a negative topK.
 */
export function createSeededSampler(options: {
  readonly seed: number;
  readonly temperature: number;
  readonly topK?: number;
}): Sampler {
  const { seed, temperature } = options;
  const topK = options.topK ?? 0;
  if (!Number.isFinite(temperature) || temperature < 0) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `temperature must be a finite number >= 0 (got ${temperature})`,
      { reason: Reason.INVALID_FIELD },
    );
  }
  if (!Number.isInteger(topK) || topK < 0) {
    throw new OpalError(Code.INVALID_ARGUMENT, `topK must be an integer >= 0 (got ${topK})`, {
      reason: Reason.INVALID_FIELD,
    });
  }
  if (!Number.isSafeInteger(seed)) {
    throw new OpalError(Code.INVALID_ARGUMENT, `seed must be a safe integer (got ${seed})`, {
      reason: Reason.INVALID_FIELD,
    });
  }
  const prng = createPrng(seed);
  return {
    sample(logits) {
      if (temperature === 0) return sampleGreedy(logits);
      const n = logits.length;
      let ids: number[];
      if (topK > 0 && topK < n) {
        ids = Array.from({ length: n }, (_, i) => i);
        ids.sort((a, b) => logits[b]! - logits[a]! || a - b);
        ids.length = topK;
      } else {
        ids = Array.from({ length: n }, (_, i) => i);
      }
      let max = Number.NEGATIVE_INFINITY;
      for (const id of ids) if (logits[id]! > max) max = logits[id]!;
      const weights = new Float64Array(ids.length);
      let sum = 0;
      for (let i = 0; i < ids.length; i++) {
        const w = Math.exp((logits[ids[i]!]! - max) / temperature);
        weights[i] = w;
        sum += w;
      }
      const u = prng.nextFloat() * sum;
      let acc = 0;
      for (let i = 0; i < ids.length; i++) {
        acc += weights[i]!;
        if (u < acc) return ids[i]!;
      }
      return ids[ids.length - 1]!;
    },
  };
}

/** The {@link Sampler} for `options`. */
export function createSampler(options: SamplingOptions): Sampler {
  if (options.kind === "greedy") return { sample: sampleGreedy };
  if (options.kind === "seeded") return createSeededSampler(options);
  throw new OpalError(
    Code.INVALID_ARGUMENT,
    `sampling kind must be "greedy" or "seeded" (got ${JSON.stringify((options as { kind: unknown }).kind)})`,
    { reason: Reason.INVALID_FIELD },
  );
}
