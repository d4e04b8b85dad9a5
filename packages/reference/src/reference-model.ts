import { Code, OpalError, Reason, throwIfAborted } from "@opal/core";
import { assertModelCache } from "./assert-model-cache";
import { assertModelTokens } from "./assert-model-tokens";
import { createAttentionScratch } from "./attention-scratch";
import { decodeTokens } from "./decode-tokens";
import { type ForwardModel, forwardTokens } from "./forward-tokens";
import { type ModelConfig, toEosTokenIds } from "./model-config";
import { toModelFingerprint } from "./model-fingerprint";
import { assertModelWeights, type ModelWeights } from "./model-weights";
import { copyKvRows, createReferenceKvCache, type ReferenceKvCache } from "./reference-kv-cache";
import { toRopeInvFreq } from "./rope";
import { createSampler, type SamplingOptions } from "./sampling";

/** Options of {@link ReferenceModel.prefill}. */
export interface PrefillOptions {
  /**
   * Cache of the tokens before `tokens` (chunked prefill). It is not modified: the result is a new
   * cache holding its rows followed by the new ones. Default: none (start at position 0).
   */
  readonly past?: ReferenceKvCache;
  /**
   * Checked before each layer; an aborted signal throws CANCELLED (or its `OpalError` reason).
   * Prefill is synchronous, so only aborts that happen before the call or inside `onLayer` are seen.
   */
  readonly signal?: AbortSignal;
  /**
   * Called after each layer with that layer's new K (after rotary) and V rows, `[numTokens][numKvHeads][headDim]`
   * f32 views into the result cache (valid until the cache grows). Lets a device stream KV layer by layer.
   */
  readonly onLayer?: (layer: number, keys: Float32Array, values: Float32Array) => void;
}

/** Result of {@link ReferenceModel.prefill}. */
export interface PrefillResult {
  /** Cache of all tokens (past + new); owned by the caller. */
  readonly cache: ReferenceKvCache;
  /** Logits of the last position, `[vocabSize]` f32. */
  readonly logits: Float32Array;
}

/** Options of {@link ReferenceModel.generate}. */
export interface GenerateOptions {
  /** Upper bound on generated tokens (>= 0). */
  readonly maxNewTokens: number;
  /** Default greedy. */
  readonly sampling?: SamplingOptions;
  /** Stop after emitting an end-of-sequence token (it is included in the result); default true. */
  readonly stopOnEos?: boolean;
  /** Checked before each layer of each step. */
  readonly signal?: AbortSignal;
}

/**
 * A Llama-family decoder-only transformer on the CPU in f32: token embedding, RMSNorm, rotary
 * embeddings (with Llama 3 scaling), grouped-query causal attention, SwiGLU MLP, final norm, LM head.
 * Deterministic: the result for position i depends only on tokens 0..i, bit for bit, however the
 * sequence is split into prefill chunks and decode steps.
 */
export interface ReferenceModel {
  readonly config: ModelConfig;
  /** Lower-case hex SHA-256 of config and weights (see {@link toModelFingerprint}). */
  readonly fingerprint: string;
  /**
   * Runs `tokens` (ids < vocabSize, at least one) through the model after `options.past`.
   * Throws INVALID_ARGUMENT for a bad token (reason `TOKEN_OUT_OF_RANGE`), an empty prompt
   * (`PROMPT_EMPTY`), a context beyond `maxPositionEmbeddings` (`PROMPT_TOO_LONG`) or a cache of
   * another shape (`INVALID_FIELD`).
   */
  prefill(tokens: ArrayLike<number>, options?: PrefillOptions): PrefillResult;
  /** Appends `token` to `cache` in place and returns the logits of that position, `[vocabSize]`. */
  decodeStep(token: number, cache: ReferenceKvCache): Float32Array;
  /**
   * Prefills `prompt`, then samples up to `maxNewTokens` tokens with `options.sampling` (default
   * greedy) and returns only the new tokens. Stops early after an EOS token (unless `stopOnEos` is
   * false) or when the context reaches `maxPositionEmbeddings`. Same prompt and options, same tokens.
   */
  generate(prompt: ArrayLike<number>, options: GenerateOptions): Uint32Array;
}

/** Options of {@link createReferenceModel}. */
export interface ReferenceModelOptions {
  /** Precomputed fingerprint, trusted as is; default: computed from the weights (SHA-256). */
  readonly fingerprint?: string;
}

/**
 * Creates a {@link ReferenceModel} over `weights` (validated; read, never copied or modified).
 * Throws INVALID_ARGUMENT when a tensor's size does not match the config.
 */
export function createReferenceModel(
  weights: ModelWeights,
  options: ReferenceModelOptions = {},
): ReferenceModel {
  assertModelWeights(weights);
  const { config } = weights;
  const fingerprint = options.fingerprint ?? toModelFingerprint(weights);
  const forward: ForwardModel = {
    weights,
    invFreq: toRopeInvFreq(config),
    scratch: createAttentionScratch(),
  };
  const model: ReferenceModel = {
    config,
    fingerprint,
    prefill(tokens, prefillOptions = {}) {
      const { past, signal, onLayer } = prefillOptions;
      if (past !== undefined) assertModelCache(config, past);
      assertModelTokens(config, tokens, past?.numTokens ?? 0);
      throwIfAborted(signal);
      const cache =
        past === undefined
          ? createReferenceKvCache(config, { capacityTokens: tokens.length })
          : copyKvRows(past, past.numTokens, past.numTokens + tokens.length);
      const logits = forwardTokens(forward, tokens, cache, { signal, onLayer });
      return { cache, logits };
    },
    decodeStep(token, cache) {
      assertModelCache(config, cache);
      assertModelTokens(config, [token], cache.numTokens);
      return forwardTokens(forward, [token], cache);
    },
    generate(prompt, generateOptions) {
      const { maxNewTokens, signal } = generateOptions;
      if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) {
        throw new OpalError(
          Code.INVALID_ARGUMENT,
          `maxNewTokens must be an integer >= 0 (got ${maxNewTokens})`,
          { reason: Reason.INVALID_FIELD },
        );
      }
      const sampler = createSampler(generateOptions.sampling ?? { kind: "greedy" });
      const stopTokenIds = generateOptions.stopOnEos === false ? [] : toEosTokenIds(config);
      if (maxNewTokens === 0) return new Uint32Array(0);
      const prefilled = model.prefill(prompt, { signal });
      return decodeTokens(forward, prefilled, sampler, { maxNewTokens, stopTokenIds, signal });
    },
  };
  return model;
}
