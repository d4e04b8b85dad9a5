import type { AttentionBlock } from "./attention-block";

/**
 * Writes the scores of the block's 4 queries into `sc` (query i at `i * ctxMax`, keys
 * 0..ctx0+i-1): `f32(f32(q.k) * scale)`, each a sequential sum over `headDim` in order. Keys all
 * four queries attend are loaded once for the four, two at a time.
 */
export function scoreAttentionBlock(
  sc: Float64Array,
  q: Float32Array,
  keys: Float32Array,
  block: AttentionBlock,
): void {
  const { qStride, kvStride, ctxMax, headDim, scale, kvOff, q0, ctx0 } = block;
  const q1 = q0 + qStride;
  const q2 = q1 + qStride;
  const q3 = q2 + qStride;
  const o1 = ctxMax;
  const o2 = 2 * ctxMax;
  const o3 = 3 * ctxMax;
  // Keys every query of the block attends, two at a time.
  let j = 0;
  for (; j + 2 <= ctx0; j += 2) {
    const kb = j * kvStride + kvOff;
    const kc = kb + kvStride;
    let a0 = 0;
    let a1 = 0;
    let a2 = 0;
    let a3 = 0;
    let b0 = 0;
    let b1 = 0;
    let b2 = 0;
    let b3 = 0;
    for (let d = 0; d < headDim; d++) {
      const k = keys[kb + d]!;
      const l = keys[kc + d]!;
      const p0 = q[q0 + d]!;
      const p1 = q[q1 + d]!;
      const p2 = q[q2 + d]!;
      const p3 = q[q3 + d]!;
      a0 += p0 * k;
      a1 += p1 * k;
      a2 += p2 * k;
      a3 += p3 * k;
      b0 += p0 * l;
      b1 += p1 * l;
      b2 += p2 * l;
      b3 += p3 * l;
    }
    sc[j] = Math.fround(Math.fround(a0) * scale);
    sc[o1 + j] = Math.fround(Math.fround(a1) * scale);
    sc[o2 + j] = Math.fround(Math.fround(a2) * scale);
    sc[o3 + j] = Math.fround(Math.fround(a3) * scale);
    sc[j + 1] = Math.fround(Math.fround(b0) * scale);
    sc[o1 + j + 1] = Math.fround(Math.fround(b1) * scale);
    sc[o2 + j + 1] = Math.fround(Math.fround(b2) * scale);
    sc[o3 + j + 1] = Math.fround(Math.fround(b3) * scale);
  }
  for (; j < ctx0; j++) {
    const kb = j * kvStride + kvOff;
    let a0 = 0;
    let a1 = 0;
    let a2 = 0;
    let a3 = 0;
    for (let d = 0; d < headDim; d++) {
      const k = keys[kb + d]!;
      a0 += q[q0 + d]! * k;
      a1 += q[q1 + d]! * k;
      a2 += q[q2 + d]! * k;
      a3 += q[q3 + d]! * k;
    }
    sc[j] = Math.fround(Math.fround(a0) * scale);
    sc[o1 + j] = Math.fround(Math.fround(a1) * scale);
    sc[o2 + j] = Math.fround(Math.fround(a2) * scale);
    sc[o3 + j] = Math.fround(Math.fround(a3) * scale);
  }
  // The causal tail: keys ctx0..ctx0+2 seen only by the later queries.
  for (let i = 1; i < 4; i++) {
    const qi = q0 + i * qStride;
    for (let j = ctx0; j < ctx0 + i; j++) {
      const kb = j * kvStride + kvOff;
      let a = 0;
      for (let d = 0; d < headDim; d++) a += q[qi + d]! * keys[kb + d]!;
      sc[i * ctxMax + j] = Math.fround(Math.fround(a) * scale);
    }
  }
}
