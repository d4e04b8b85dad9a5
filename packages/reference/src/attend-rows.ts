/**
 * Causal grouped-query attention of the reference model, with the same determinism rule as
 * `kernels.ts`: each score and each output element is a fixed sequential sum independent of how
 * queries are blocked. Internal to the package.
 */

/** Scratch buffers of {@link attendRows}, reusable between calls; grown on demand. */
export interface AttentionScratch {
  scores: Float64Array;
  acc: Float64Array;
  valuesT: Float32Array;
}

/** Creates empty {@link AttentionScratch}. */
export function createAttentionScratch(): AttentionScratch {
  return { scores: new Float64Array(0), acc: new Float64Array(0), valuesT: new Float32Array(0) };
}

/** Shape arguments of {@link attendRows}. */
export interface AttentionShape {
  readonly numTokens: number;
  readonly pastTokens: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
}

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
  const kvStride = numKvHeads * headDim;
  const qStride = numHeads * headDim;
  const scale = 1 / Math.sqrt(headDim);
  if (scratch.scores.length < 4 * ctxMax) scratch.scores = new Float64Array(4 * ctxMax);
  if (scratch.valuesT.length < headDim * ctxMax) {
    scratch.valuesT = new Float32Array(headDim * ctxMax);
  }
  const sc = scratch.scores;
  const vT = scratch.valuesT;
  const o1 = ctxMax;
  const o2 = 2 * ctxMax;
  const o3 = 3 * ctxMax;
  for (let g = 0; g < numKvHeads; g++) {
    const kvOff = g * headDim;
    for (let j = 0; j < ctxMax; j++) {
      const vb = j * kvStride + kvOff;
      for (let d = 0; d < headDim; d++) vT[d * ctxMax + j] = values[vb + d]!;
    }
    for (let h = g * group; h < (g + 1) * group; h++) {
      let t = 0;
      for (; t + 4 <= numTokens; t += 4) {
        const q0 = t * qStride + h * headDim;
        const q1 = q0 + qStride;
        const q2 = q1 + qStride;
        const q3 = q2 + qStride;
        const ctx0 = pastTokens + t + 1;
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
      for (; t < numTokens; t++) {
        attendOne(out, q, keys, values, shape, scratch, t, h);
      }
    }
  }
}

const LN2_HI = 0.6931471803691238;
const LN2_LO = 1.9082149292705877e-10;
let pow2Table: Float64Array | undefined;

/**
 * `exp(x)` for `x <= 0` with relative error below 1e-8, from IEEE arithmetic only (range reduction
 * by ln 2, degree-8 Taylor polynomial, power-of-two table): faster than `Math.exp` and the same on
 * every platform. Returns 0 below -700.
 */
export function expNonPositive(x: number): number {
  if (x < -700) return 0;
  const table = pow2Table ?? createPow2Table();
  const k = Math.round(x * Math.LOG2E);
  const r = x - k * LN2_HI - k * LN2_LO;
  const p =
    1 +
    r *
      (1 +
        r *
          (0.5 +
            r *
              (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720 + r * (1 / 5040 + r / 40320)))))));
  return p * table[-k]!;
}

function createPow2Table(): Float64Array {
  const table = new Float64Array(1024);
  for (let i = 0; i < table.length; i++) table[i] = 2 ** -i;
  pow2Table = table;
  return table;
}

/** Replaces `ctx` scores at `offset` by `exp(s - max)`; returns 1 / their sum. */
function softmaxInPlace(scores: Float64Array, offset: number, ctx: number): number {
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

/** Attention of one query (token t, head h), same arithmetic as the blocked path. */
function attendOne(
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
