import type { ModelConfig } from "./model-config";

/**
 * Rotary inverse frequencies, `[headDim/2]`, as Hugging Face computes them: `1 / theta^(2k/headDim)`,
 * then, with Llama 3 scaling, low frequencies divided by `factor` and the middle band interpolated
 * (`_compute_llama3_parameters`). Values rounded to f32.
 */
export function toRopeInvFreq(config: ModelConfig): Float32Array {
  const { headDim, ropeTheta, ropeScaling } = config;
  const half = headDim >> 1;
  const inv = new Float32Array(half);
  for (let k = 0; k < half; k++) {
    inv[k] = 1 / Math.fround(ropeTheta ** Math.fround((2 * k) / headDim));
  }
  if (ropeScaling === null) return inv;
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings } = ropeScaling;
  const lowFreqWavelen = originalMaxPositionEmbeddings / lowFreqFactor;
  const highFreqWavelen = originalMaxPositionEmbeddings / highFreqFactor;
  for (let k = 0; k < half; k++) {
    const f = inv[k]!;
    const wavelen = (2 * Math.PI) / f;
    if (wavelen > lowFreqWavelen) {
      inv[k] = f / factor;
    } else if (wavelen >= highFreqWavelen) {
      const smooth =
        (originalMaxPositionEmbeddings / wavelen - lowFreqFactor) /
        (highFreqFactor - lowFreqFactor);
      inv[k] = (1 - smooth) * (f / factor) + smooth * f;
    }
  }
  return inv;
}

/**
 * Cosine and sine tables `[numTokens][headDim/2]` for positions `startPosition..+numTokens-1`:
 * `angle = f32(position * invFreq[k])`, values rounded to f32.
 */
export function toRopeTables(
  invFreq: Float32Array,
  startPosition: number,
  numTokens: number,
): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length;
  const cos = new Float32Array(numTokens * half);
  const sin = new Float32Array(numTokens * half);
  for (let t = 0; t < numTokens; t++) {
    const p = startPosition + t;
    for (let k = 0; k < half; k++) {
      const angle = Math.fround(p * invFreq[k]!);
      cos[t * half + k] = Math.cos(angle);
      sin[t * half + k] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
