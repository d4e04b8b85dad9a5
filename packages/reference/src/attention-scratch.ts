/** Scratch buffers of `attendRows`, reusable between calls; grown on demand. */
export interface AttentionScratch {
  scores: Float64Array;
  acc: Float64Array;
  valuesT: Float32Array;
}

/** Creates empty {@link AttentionScratch}. */
export function createAttentionScratch(): AttentionScratch {
  return { scores: new Float64Array(0), acc: new Float64Array(0), valuesT: new Float32Array(0) };
}
