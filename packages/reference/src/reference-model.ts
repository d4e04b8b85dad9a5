import { Code, OpalError, Reason, throwIfAborted } from "@opal/core";
import { attendRows, createAttentionScratch } from "./attend-rows";
import { addInPlace, applyRotaryRows, matmulRows, rmsNormRows, swigluInPlace } from "./kernels";
import { type ModelConfig, toEosTokenIds } from "./model-config";
import { toModelFingerprint } from "./model-fingerprint";
import { assertModelWeights, type ModelWeights } from "./model-weights";
import {
  copyKvRows,
  createReferenceKvCache,
  type ReferenceKvCache,
  reserveKvCapacity,
} from "./reference-kv-cache";
import { toRopeInvFreq, toRopeTables } from "./rope";
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
  const invFreq = toRopeInvFreq(config);
  const scratch = createAttentionScratch();

  const checkTokens = (tokens: ArrayLike<number>, past: number) => {
    if (tokens.length === 0) {
      throw new OpalError(Code.INVALID_ARGUMENT, "prompt has 0 tokens (expected >= 1)", {
        reason: Reason.PROMPT_EMPTY,
      });
    }
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i]!;
      if (!Number.isInteger(t) || t < 0 || t >= config.vocabSize) {
        throw new OpalError(
          Code.INVALID_ARGUMENT,
          `token ${t} at index ${i} out of range (vocabulary has ${config.vocabSize} tokens)`,
          { reason: "TOKEN_OUT_OF_RANGE" },
        );
      }
    }
    if (past + tokens.length > config.maxPositionEmbeddings) {
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `context of ${past + tokens.length} tokens exceeds maxPositionEmbeddings ${config.maxPositionEmbeddings}`,
        { reason: Reason.PROMPT_TOO_LONG },
      );
    }
  };

  const checkCache = (cache: ReferenceKvCache) => {
    if (
      cache.numLayers !== config.numHiddenLayers ||
      cache.numKvHeads !== config.numKeyValueHeads ||
      cache.headDim !== config.headDim
    ) {
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `cache has ${cache.numLayers} layers x ${cache.numKvHeads} KV heads x ${cache.headDim} dims (model has ${config.numHiddenLayers} x ${config.numKeyValueHeads} x ${config.headDim})`,
        { reason: Reason.INVALID_FIELD },
      );
    }
  };

  /** Runs `tokens` after the cache's rows, appending to the cache in place. */
  const forward = (
    tokens: ArrayLike<number>,
    cache: ReferenceKvCache,
    signal: AbortSignal | undefined,
    onLayer: PrefillOptions["onLayer"],
  ): Float32Array => {
    const n = tokens.length;
    const past = cache.numTokens;
    const h = config.hiddenSize;
    const nh = config.numAttentionHeads;
    const nkv = config.numKeyValueHeads;
    const hd = config.headDim;
    const inter = config.intermediateSize;
    const row = nkv * hd;
    reserveKvCapacity(cache, past + n);
    const x = new Float32Array(n * h);
    for (let t = 0; t < n; t++) {
      const id = tokens[t]!;
      x.set(weights.embedTokens.subarray(id * h, (id + 1) * h), t * h);
    }
    const xn = new Float32Array(n * h);
    const q = new Float32Array(n * nh * hd);
    const attn = new Float32Array(n * nh * hd);
    const proj = new Float32Array(n * h);
    const gate = new Float32Array(n * inter);
    const up = new Float32Array(n * inter);
    const { cos, sin } = toRopeTables(invFreq, past, n);
    for (let l = 0; l < config.numHiddenLayers; l++) {
      throwIfAborted(signal);
      const w = weights.layers[l]!;
      const keys = cache.keys[l]!;
      const values = cache.values[l]!;
      const newKeys = keys.subarray(past * row, (past + n) * row);
      const newValues = values.subarray(past * row, (past + n) * row);
      rmsNormRows(xn, x, w.inputLayernorm, n, h, config.rmsNormEps);
      matmulRows(q, xn, w.qProj, n, h, nh * hd);
      matmulRows(newKeys, xn, w.kProj, n, h, row);
      matmulRows(newValues, xn, w.vProj, n, h, row);
      applyRotaryRows(q, cos, sin, n, nh, hd);
      applyRotaryRows(newKeys, cos, sin, n, nkv, hd);
      const shape = { numTokens: n, pastTokens: past, numHeads: nh, numKvHeads: nkv, headDim: hd };
      attendRows(attn, q, keys, values, shape, scratch);
      matmulRows(proj, attn, w.oProj, n, nh * hd, h);
      addInPlace(x, proj, n * h);
      rmsNormRows(xn, x, w.postAttentionLayernorm, n, h, config.rmsNormEps);
      matmulRows(gate, xn, w.gateProj, n, h, inter);
      matmulRows(up, xn, w.upProj, n, h, inter);
      swigluInPlace(gate, up, n * inter);
      matmulRows(proj, gate, w.downProj, n, inter, h);
      addInPlace(x, proj, n * h);
      onLayer?.(l, newKeys, newValues);
    }
    const last = new Float32Array(h);
    rmsNormRows(last, x.subarray((n - 1) * h, n * h), weights.norm, 1, h, config.rmsNormEps);
    const logits = new Float32Array(config.vocabSize);
    matmulRows(logits, last, weights.lmHead, 1, h, config.vocabSize);
    cache.numTokens = past + n;
    return logits;
  };

  const model: ReferenceModel = {
    config,
    fingerprint,
    prefill(tokens, prefillOptions = {}) {
      const { past, signal, onLayer } = prefillOptions;
      if (past !== undefined) checkCache(past);
      const pastTokens = past?.numTokens ?? 0;
      checkTokens(tokens, pastTokens);
      throwIfAborted(signal);
      const cache =
        past === undefined
          ? createReferenceKvCache(config, { capacityTokens: tokens.length })
          : copyKvRows(past, past.numTokens, past.numTokens + tokens.length);
      const logits = forward(tokens, cache, signal, onLayer);
      return { cache, logits };
    },
    decodeStep(token, cache) {
      checkCache(cache);
      checkTokens([token], cache.numTokens);
      return forward([token], cache, undefined, undefined);
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
      const stop = generateOptions.stopOnEos === false ? [] : toEosTokenIds(config);
      const out: number[] = [];
      if (maxNewTokens === 0) return new Uint32Array(0);
      const prefilled = model.prefill(prompt, { signal });
      const cache = prefilled.cache;
      let logits = prefilled.logits;
      for (;;) {
        const token = sampler.sample(logits);
        out.push(token);
        if (out.length >= maxNewTokens || stop.includes(token)) break;
        if (cache.numTokens + 1 > config.maxPositionEmbeddings) break;
        throwIfAborted(signal);
        logits = forward([token], cache, signal, undefined);
      }
      return Uint32Array.from(out);
    },
  };
  return model;
}
