import type { ModelConfig } from "./model-config";

/**
 * Floating-point operations of a prefill of `numTokens` new tokens after `options.pastTokens`
 * (default 0) cached ones, as counted for GFLOP/s figures and timing models:
 *
 * - linear layers: `2 * numTokens * numHiddenLayers * (hidden * (numAttentionHeads + 2 *
 *   numKeyValueHeads) * headDim + numAttentionHeads * headDim * hidden + 3 * hidden * intermediate)`;
 * - LM head: `2 * hidden * vocabSize` once (only the last position's logits are computed);
 * - attention: `4 * ctx * headDim * numAttentionHeads` per token per layer, where ctx = position + 1
 *   is the number of keys it attends (QK^T and softmax x V, 2 FLOPs per multiply-add each), summed
 *   over positions `pastTokens..pastTokens+numTokens-1`.
 *
 * Norms, rotary, softmax exponentials and the SwiGLU activation are not counted. A decode step is
 * `prefillFlops(config, 1, { pastTokens })`.
 */
export function prefillFlops(
  config: ModelConfig,
  numTokens: number,
  options: { readonly pastTokens?: number } = {},
): number {
  const past = options.pastTokens ?? 0;
  const h = config.hiddenSize;
  const qDim = config.numAttentionHeads * config.headDim;
  const kvDim = config.numKeyValueHeads * config.headDim;
  const perTokenLayer = h * (qDim + 2 * kvDim) + qDim * h + 3 * h * config.intermediateSize;
  const linear = 2 * numTokens * config.numHiddenLayers * perTokenLayer;
  const head = numTokens > 0 ? 2 * h * config.vocabSize : 0;
  // sum over positions p in [past, past + n) of (p + 1)
  const ctxSum = (numTokens * (2 * past + numTokens + 1)) / 2;
  const attention = 4 * ctxSum * config.headDim * config.numAttentionHeads * config.numHiddenLayers;
  return linear + head + attention;
}
