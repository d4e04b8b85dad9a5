import type { AttentionShape } from "./attention-block";
import type { AttentionScratch } from "./attention-scratch";
import { softmaxInPlace } from "./softmax-in-place";

/** Attention of one query (token t, head h), same arithmetic as the blocked path. */
export function attendOne(
  out: Float32Array,
  q: Float32Array,
  keys: Float32Array,
  values: Float32Array,
  shape: AttentionShape,
  scratch: AttentionScratch,
  t: number,
  h: number,
): void {
  const { pastTokens, numHeads, numKvHeads, headDim } = shape;
  const group = numHeads / numKvHeads;
  const kvStride = numKvHeads * headDim;
  const scale = 1 / Math.sqrt(headDim);
  const ctx = pastTokens + t + 1;
  if (scratch.scores.length < ctx) scratch.scores = new Float64Array(ctx);
  if (scratch.acc.length < headDim) scratch.acc = new Float64Array(headDim);
  const sc = scratch.scores;
  const acc = scratch.acc;
  const qb = (t * numHeads + h) * headDim;
  const kvOff = Math.floor(h / group) * headDim;
  for (let j = 0; j < ctx; j++) {
    const kb = j * kvStride + kvOff;
    let a = 0;
    for (let d = 0; d < headDim; d++) a += q[qb + d]! * keys[kb + d]!;
    sc[j] = Math.fround(Math.fround(a) * scale);
  }
  const inv = softmaxInPlace(sc, 0, ctx);
  acc.fill(0, 0, headDim);
  for (let j = 0; j < ctx; j++) {
    const p = sc[j]!;
    const vb = j * kvStride + kvOff;
    for (let d = 0; d < headDim; d++) acc[d] = acc[d]! + p * values[vb + d]!;
  }
  for (let d = 0; d < headDim; d++) out[qb + d] = acc[d]! * inv;
}
