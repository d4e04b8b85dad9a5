/** Shape arguments of `attendRows`. */
export interface AttentionShape {
  readonly numTokens: number;
  readonly pastTokens: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
}

/**
 * A block of 4 consecutive queries of one head, as the blocked attention path walks them: the
 * strides and scale of the pass, and which queries, KV head and keys the block covers. Allocated
 * once per pass and updated in place for each block (no allocation in the loops).
 */
export interface AttentionBlock {
  /** Floats between the rows of consecutive tokens in `q` and `out`: numHeads × headDim. */
  readonly qStride: number;
  /** Floats between the rows of consecutive positions in the cache: numKvHeads × headDim. */
  readonly kvStride: number;
  /** Positions in the context: pastTokens + numTokens; the stride of the scores and values rows. */
  readonly ctxMax: number;
  readonly headDim: number;
  /** 1 / sqrt(headDim). */
  readonly scale: number;
  /** Offset of the block's KV head in a cache row: kvHead × headDim. */
  kvOff: number;
  /** Offset of the block's first query in `q` and `out`. */
  q0: number;
  /** Keys the first query attends (its position + 1); query i attends ctx0 + i. */
  ctx0: number;
}
