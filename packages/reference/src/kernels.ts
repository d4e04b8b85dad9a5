/**
 * Numeric kernels of the reference transformer. Every output element is computed by a fixed
 * sequential summation (in f64, stored as f32) that depends only on its own inputs, never on how
 * many tokens are processed together: that is what makes chunked prefill, decode and single-shot
 * prefill agree bit for bit. Internal to the package.
 */

/**
 * `out[t][o] = sum_i x[t][i] * w[o][i]` for `numTokens` rows: `x` is `[numTokens][inDim]`, `w` is
 * `[outDim][inDim]` (Hugging Face `nn.Linear.weight`), `out` is `[numTokens][outDim]`. Blocks of
 * 4 tokens x 2 output rows reuse loaded values; the summation order per element is always i = 0..in-1.
 */
export function matmulRows(
  out: Float32Array,
  x: Float32Array,
  w: Float32Array,
  numTokens: number,
  inDim: number,
  outDim: number,
): void {
  let t = 0;
  for (; t + 4 <= numTokens; t += 4) {
    const x0 = t * inDim;
    const x1 = x0 + inDim;
    const x2 = x1 + inDim;
    const x3 = x2 + inDim;
    const r0 = t * outDim;
    const r1 = r0 + outDim;
    const r2 = r1 + outDim;
    const r3 = r2 + outDim;
    let o = 0;
    for (; o + 2 <= outDim; o += 2) {
      const wa = o * inDim;
      const wb = wa + inDim;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      let b0 = 0;
      let b1 = 0;
      let b2 = 0;
      let b3 = 0;
      for (let i = 0; i < inDim; i++) {
        const u = w[wa + i]!;
        const v = w[wb + i]!;
        const p0 = x[x0 + i]!;
        const p1 = x[x1 + i]!;
        const p2 = x[x2 + i]!;
        const p3 = x[x3 + i]!;
        a0 += u * p0;
        a1 += u * p1;
        a2 += u * p2;
        a3 += u * p3;
        b0 += v * p0;
        b1 += v * p1;
        b2 += v * p2;
        b3 += v * p3;
      }
      out[r0 + o] = a0;
      out[r1 + o] = a1;
      out[r2 + o] = a2;
      out[r3 + o] = a3;
      out[r0 + o + 1] = b0;
      out[r1 + o + 1] = b1;
      out[r2 + o + 1] = b2;
      out[r3 + o + 1] = b3;
    }
    for (; o < outDim; o++) {
      const wa = o * inDim;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      for (let i = 0; i < inDim; i++) {
        const u = w[wa + i]!;
        a0 += u * x[x0 + i]!;
        a1 += u * x[x1 + i]!;
        a2 += u * x[x2 + i]!;
        a3 += u * x[x3 + i]!;
      }
      out[r0 + o] = a0;
      out[r1 + o] = a1;
      out[r2 + o] = a2;
      out[r3 + o] = a3;
    }
  }
  for (; t < numTokens; t++) {
    const x0 = t * inDim;
    const r0 = t * outDim;
    let o = 0;
    for (; o + 2 <= outDim; o += 2) {
      const wa = o * inDim;
      const wb = wa + inDim;
      let a0 = 0;
      let b0 = 0;
      for (let i = 0; i < inDim; i++) {
        const p0 = x[x0 + i]!;
        a0 += w[wa + i]! * p0;
        b0 += w[wb + i]! * p0;
      }
      out[r0 + o] = a0;
      out[r0 + o + 1] = b0;
    }
    for (; o < outDim; o++) {
      const wa = o * inDim;
      let a0 = 0;
      for (let i = 0; i < inDim; i++) a0 += w[wa + i]! * x[x0 + i]!;
      out[r0 + o] = a0;
    }
  }
}

/**
 * RMSNorm per row as in Hugging Face `LlamaRMSNorm` computed in f32:
 * `out = weight * (x / sqrt(mean(x^2) + eps))`. `x` and `out` are `[numTokens][dim]` (may alias).
 */
export function rmsNormRows(
  out: Float32Array,
  x: Float32Array,
  weight: Float32Array,
  numTokens: number,
  dim: number,
  eps: number,
): void {
  for (let t = 0; t < numTokens; t++) {
    const base = t * dim;
    let sum = 0;
    for (let i = 0; i < dim; i++) {
      const v = x[base + i]!;
      sum += v * v;
    }
    const variance = Math.fround(sum / dim);
    const inv = Math.fround(1 / Math.sqrt(Math.fround(variance + eps)));
    for (let i = 0; i < dim; i++) {
      out[base + i] = weight[i]! * Math.fround(x[base + i]! * inv);
    }
  }
}

/**
 * Applies rotary embeddings in place with the Hugging Face `rotate_half` convention (dimension i
 * pairs with i + headDim/2). `x` is `[numTokens][numHeads][headDim]`; `cos`/`sin` are
 * `[numTokens][headDim/2]` for the tokens' absolute positions.
 */
export function applyRotaryRows(
  x: Float32Array,
  cos: Float32Array,
  sin: Float32Array,
  numTokens: number,
  numHeads: number,
  headDim: number,
): void {
  const half = headDim >> 1;
  for (let t = 0; t < numTokens; t++) {
    const tb = t * half;
    for (let h = 0; h < numHeads; h++) {
      const base = (t * numHeads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const c = cos[tb + i]!;
        const s = sin[tb + i]!;
        const x1 = x[base + i]!;
        const x2 = x[base + half + i]!;
        x[base + i] = Math.fround(x1 * c) - Math.fround(x2 * s);
        x[base + half + i] = Math.fround(x2 * c) + Math.fround(x1 * s);
      }
    }
  }
}

/** `gate[i] = silu(gate[i]) * up[i]` for `length` elements (SwiGLU), in place in `gate`. */
export function swigluInPlace(gate: Float32Array, up: Float32Array, length: number): void {
  for (let i = 0; i < length; i++) {
    const g = gate[i]!;
    gate[i] = Math.fround(g / (1 + Math.exp(-g))) * up[i]!;
  }
}

/** `x[i] += y[i]` for `length` elements. */
export function addInPlace(x: Float32Array, y: Float32Array, length: number): void {
  for (let i = 0; i < length; i++) x[i] = x[i]! + y[i]!;
}
