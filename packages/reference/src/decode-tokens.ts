import { throwIfAborted } from "@opal/core";
import { type ForwardModel, forwardTokens } from "./forward-tokens";
import type { ReferenceKvCache } from "./reference-kv-cache";
import type { Sampler } from "./sampling";

/** Options of {@link decodeTokens}. */
export interface DecodeTokensOptions {
  /** At most this many tokens (>= 1). */
  readonly maxNewTokens: number;
  /** Tokens that end the sequence once emitted (included in the result). */
  readonly stopTokenIds: readonly number[];
  /** Checked before each step (and each layer of it). */
  readonly signal?: AbortSignal | undefined;
}

/**
 * The decode loop of `generate`: samples a token from `logits`, appends it to `cache` (in place)
 * and runs it to get the next logits, until `maxNewTokens` tokens, a stop token, or a full context
 * (`maxPositionEmbeddings`). Returns the sampled tokens.
 */
export function decodeTokens(
  model: ForwardModel,
  prefilled: { readonly cache: ReferenceKvCache; readonly logits: Float32Array },
  sampler: Sampler,
  options: DecodeTokensOptions,
): Uint32Array {
  const { cache } = prefilled;
  const { maxNewTokens, stopTokenIds, signal } = options;
  const maxContext = model.weights.config.maxPositionEmbeddings;
  const out: number[] = [];
  let logits = prefilled.logits;
  for (;;) {
    const token = sampler.sample(logits);
    out.push(token);
    if (out.length >= maxNewTokens || stopTokenIds.includes(token)) break;
    if (cache.numTokens + 1 > maxContext) break;
    throwIfAborted(signal);
    logits = forwardTokens(model, [token], cache, { signal });
  }
  return Uint32Array.from(out);
}
