import { throwIfAborted } from "@opal/core";
import { attendRows } from "./attend-rows";
import type { AttentionShape } from "./attention-block";
import type { AttentionScratch } from "./attention-scratch";
import { addInPlace, applyRotaryRows, matmulRows, rmsNormRows, swigluInPlace } from "./kernels";
import type { ModelWeights } from "./model-weights";
import { type ReferenceKvCache, reserveKvCapacity } from "./reference-kv-cache";
import { toRopeTables } from "./rope";

/** What a forward pass reads: the weights, the rotary frequencies and reusable attention scratch. */
export interface ForwardModel {
  readonly weights: ModelWeights;
  /** `toRopeInvFreq(weights.config)`. */
  readonly invFreq: Float32Array;
  /** Reused by every pass of the model (passes are synchronous, so never shared at once). */
  readonly scratch: AttentionScratch;
}

/** Options of {@link forwardTokens}. */
export interface ForwardOptions {
  /** Checked before each layer. */
  readonly signal?: AbortSignal | undefined;
  /** Called after each layer with its new K (after rotary) and V rows, views into the cache. */
  readonly onLayer?:
    | ((layer: number, keys: Float32Array, values: Float32Array) => void)
    | undefined;
}

/** The activations of one pass, `numTokens` rows each, reused by every layer. */
interface ForwardBuffers {
  readonly x: Float32Array;
  readonly xn: Float32Array;
  readonly q: Float32Array;
  readonly attn: Float32Array;
  readonly proj: Float32Array;
  readonly gate: Float32Array;
  readonly up: Float32Array;
  readonly cos: Float32Array;
  readonly sin: Float32Array;
  readonly shape: AttentionShape;
}

/**
 * Runs `tokens` (checked by the caller) after the cache's rows, appending their K and V to the
 * cache in place, and returns the logits of the last position, `[vocabSize]` f32. Throws the
 * signal's reason when it is aborted before a layer.
 */
export function forwardTokens(
  model: ForwardModel,
  tokens: ArrayLike<number>,
  cache: ReferenceKvCache,
  options: ForwardOptions = {},
): Float32Array {
  const { weights } = model;
  const { config } = weights;
  const n = tokens.length;
  const past = cache.numTokens;
  const h = config.hiddenSize;
  const nh = config.numAttentionHeads;
  const hd = config.headDim;
  const inter = config.intermediateSize;
  reserveKvCapacity(cache, past + n);
  const x = new Float32Array(n * h);
  for (let t = 0; t < n; t++) {
    const id = tokens[t]!;
    x.set(weights.embedTokens.subarray(id * h, (id + 1) * h), t * h);
  }
  const { cos, sin } = toRopeTables(model.invFreq, past, n);
  const buffers: ForwardBuffers = {
    x,
    xn: new Float32Array(n * h),
    q: new Float32Array(n * nh * hd),
    attn: new Float32Array(n * nh * hd),
    proj: new Float32Array(n * h),
    gate: new Float32Array(n * inter),
    up: new Float32Array(n * inter),
    cos,
    sin,
    shape: {
      numTokens: n,
      pastTokens: past,
      numHeads: nh,
      numKvHeads: config.numKeyValueHeads,
      headDim: hd,
    },
  };
  for (let l = 0; l < config.numHiddenLayers; l++) {
    throwIfAborted(options.signal);
    forwardLayer(model, cache, l, buffers, options.onLayer);
  }
  const last = new Float32Array(h);
  rmsNormRows(last, x.subarray((n - 1) * h, n * h), weights.norm, 1, h, config.rmsNormEps);
  const logits = new Float32Array(config.vocabSize);
  matmulRows(logits, last, weights.lmHead, 1, h, config.vocabSize);
  cache.numTokens = past + n;
  return logits;
}

/** One decoder layer over the pass's rows: attention then MLP, each added to `x`. */
function forwardLayer(
  model: ForwardModel,
  cache: ReferenceKvCache,
  l: number,
  buffers: ForwardBuffers,
  onLayer: ForwardOptions["onLayer"],
): void {
  const { config } = model.weights;
  const { x, xn, q, attn, proj, gate, up, cos, sin, shape } = buffers;
  const n = shape.numTokens;
  const past = shape.pastTokens;
  const h = config.hiddenSize;
  const nh = shape.numHeads;
  const nkv = shape.numKvHeads;
  const hd = shape.headDim;
  const inter = config.intermediateSize;
  const row = nkv * hd;
  const w = model.weights.layers[l]!;
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
  attendRows(attn, q, keys, values, shape, model.scratch);
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
