import { expNonPositive } from "./exp-non-positive";

/** Replaces `ctx` scores at `offset` by `exp(s - max)`; returns 1 / their sum. */
export function softmaxInPlace(scores: Float64Array, offset: number, ctx: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < ctx; j++) {
    const s = scores[offset + j]!;
    if (s > max) max = s;
  }
  let sum = 0;
  for (let j = 0; j < ctx; j++) {
    const e = expNonPositive(scores[offset + j]! - max);
    scores[offset + j] = e;
    sum += e;
  }
  return 1 / sum;
}
