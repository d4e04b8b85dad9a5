/**
 * Causal grouped-query attention of the reference model, with the same determinism rule as
 * `kernels.ts`: each score and each output element is a fixed sequential sum independent of how
 * queries are blocked. Internal to the package.
 */
import { attendOne } from "./attend-one";
import type { AttentionBlock, AttentionShape } from "./attention-block";
import type { AttentionScratch } from "./attention-scratch";
import { scoreAttentionBlock } from "./score-attention-block";
import { weighAttentionBlock } from "./weigh-attention-block";

/**
 * Causal grouped-query attention for `numTokens` queries at absolute positions
 * `pastTokens..pastTokens+numTokens-1`. `q` is `[numTokens][numHeads][headDim]` after rotary;
 * `keys`/`values` are a layer of the cache `[positions][numKvHeads][headDim]` already holding the
 * new tokens; `out` is `[numTokens][numHeads][headDim]`. Query at position p attends keys 0..p:
 * scores `f32(f32(q.k) / sqrt(headDim))`, softmax with the max subtracted, weights and sums in f64
 * accumulated over keys in order 0..p. Blocks of 4 queries share key and value loads; the blocked and
 * single-query paths perform the same additions in the same order, so results are identical.
 */
export function attendRows(
  out: Float32Array,
  q: Float32Array,
  keys: Float32Array,
  values: Float32Array,
  shape: AttentionShape,
  scratch: AttentionScratch,
): void {
  const { numTokens, pastTokens, numHeads, numKvHeads, headDim } = shape;
  const ctxMax = pastTokens + numTokens;
  if (numTokens < 4) {
    attendSingle(out, q, keys, values, shape, scratch);
    return;
  }
  const group = numHeads / numKvHeads;
  if (scratch.scores.length < 4 * ctxMax) scratch.scores = new Float64Array(4 * ctxMax);
  if (scratch.valuesT.length < headDim * ctxMax) {
    scratch.valuesT = new Float32Array(headDim * ctxMax);
  }
  const sc = scratch.scores;
  const vT = scratch.valuesT;
  const block: AttentionBlock = {
    qStride: numHeads * headDim,
    kvStride: numKvHeads * headDim,
    ctxMax,
    headDim,
    scale: 1 / Math.sqrt(headDim),
    kvOff: 0,
    q0: 0,
    ctx0: 0,
  };
  for (let g = 0; g < numKvHeads; g++) {
    const kvOff = g * headDim;
    block.kvOff = kvOff;
    for (let j = 0; j < ctxMax; j++) {
      const vb = j * block.kvStride + kvOff;
      for (let d = 0; d < headDim; d++) vT[d * ctxMax + j] = values[vb + d]!;
    }
    for (let h = g * group; h < (g + 1) * group; h++) {
      let t = 0;
      for (; t + 4 <= numTokens; t += 4) {
        block.q0 = t * block.qStride + h * headDim;
        block.ctx0 = pastTokens + t + 1;
        scoreAttentionBlock(sc, q, keys, block);
        weighAttentionBlock(out, sc, vT, block);
      }
      for (; t < numTokens; t++) {
        attendOne(out, q, keys, values, shape, scratch, t, h);
      }
    }
  }
}

function attendSingle(
  out: Float32Array,
  q: Float32Array,
  keys: Float32Array,
  values: Float32Array,
  shape: AttentionShape,
  scratch: AttentionScratch,
): void {
  for (let t = 0; t < shape.numTokens; t++) {
    for (let h = 0; h < shape.numHeads; h++) attendOne(out, q, keys, values, shape, scratch, t, h);
  }
}
