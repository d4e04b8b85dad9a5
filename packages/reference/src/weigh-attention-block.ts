import type { AttentionBlock } from "./attention-block";
import { softmaxInPlace } from "./softmax-in-place";

/**
 * Turns the block's scores in `sc` into softmax weights (in place) and writes the 4 queries'
 * outputs: the weighted sums of the value rows of `vT` (the KV head's values transposed,
 * `[headDim][ctxMax]`), accumulated in f64 over keys in order, then scaled by 1 / the weights' sum.
 * Two value rows at a time (headDim is even).
 */
export function weighAttentionBlock(
  out: Float32Array,
  sc: Float64Array,
  vT: Float32Array,
  block: AttentionBlock,
): void {
  const { qStride, ctxMax, headDim, q0, ctx0 } = block;
  const q1 = q0 + qStride;
  const q2 = q1 + qStride;
  const q3 = q2 + qStride;
  const o1 = ctxMax;
  const o2 = 2 * ctxMax;
  const o3 = 3 * ctxMax;
  const inv0 = softmaxInPlace(sc, 0, ctx0);
  const inv1 = softmaxInPlace(sc, o1, ctx0 + 1);
  const inv2 = softmaxInPlace(sc, o2, ctx0 + 2);
  const inv3 = softmaxInPlace(sc, o3, ctx0 + 3);
  let d = 0;
  for (; d < headDim; d += 2) {
    // headDim is even: two value rows at a time.
    const vb = d * ctxMax;
    const vc = vb + ctxMax;
    let a0 = 0;
    let a1 = 0;
    let a2 = 0;
    let a3 = 0;
    let b0 = 0;
    let b1 = 0;
    let b2 = 0;
    let b3 = 0;
    for (let j = 0; j < ctx0; j++) {
      const v = vT[vb + j]!;
      const w = vT[vc + j]!;
      const p0 = sc[j]!;
      const p1 = sc[o1 + j]!;
      const p2 = sc[o2 + j]!;
      const p3 = sc[o3 + j]!;
      a0 += p0 * v;
      a1 += p1 * v;
      a2 += p2 * v;
      a3 += p3 * v;
      b0 += p0 * w;
      b1 += p1 * w;
      b2 += p2 * w;
      b3 += p3 * w;
    }
    const v0 = vT[vb + ctx0]!;
    const v1 = vT[vb + ctx0 + 1]!;
    const v2 = vT[vb + ctx0 + 2]!;
    const w0 = vT[vc + ctx0]!;
    const w1 = vT[vc + ctx0 + 1]!;
    const w2 = vT[vc + ctx0 + 2]!;
    a1 += sc[o1 + ctx0]! * v0;
    a2 += sc[o2 + ctx0]! * v0;
    a2 += sc[o2 + ctx0 + 1]! * v1;
    a3 += sc[o3 + ctx0]! * v0;
    a3 += sc[o3 + ctx0 + 1]! * v1;
    a3 += sc[o3 + ctx0 + 2]! * v2;
    b1 += sc[o1 + ctx0]! * w0;
    b2 += sc[o2 + ctx0]! * w0;
    b2 += sc[o2 + ctx0 + 1]! * w1;
    b3 += sc[o3 + ctx0]! * w0;
    b3 += sc[o3 + ctx0 + 1]! * w1;
    b3 += sc[o3 + ctx0 + 2]! * w2;
    out[q0 + d] = a0 * inv0;
    out[q1 + d] = a1 * inv1;
    out[q2 + d] = a2 * inv2;
    out[q3 + d] = a3 * inv3;
    out[q0 + d + 1] = b0 * inv0;
    out[q1 + d + 1] = b1 * inv1;
    out[q2 + d + 1] = b2 * inv2;
    out[q3 + d + 1] = b3 * inv3;
  }
}
