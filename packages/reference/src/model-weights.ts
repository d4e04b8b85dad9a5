import { Code, OpalError, Reason } from "@opal/core";
import { assertModelConfig, type ModelConfig } from "./model-config";

/**
 * Weights of one decoder layer, f32. Matrices are row-major `[outFeatures][inFeatures]` exactly as
 * Hugging Face stores `nn.Linear.weight`.
 */
export interface LayerWeights {
  /** RMSNorm before attention, `[hiddenSize]`. */
  readonly inputLayernorm: Float32Array;
  /** `[numAttentionHeads * headDim][hiddenSize]`. */
  readonly qProj: Float32Array;
  /** `[numKeyValueHeads * headDim][hiddenSize]`. */
  readonly kProj: Float32Array;
  /** `[numKeyValueHeads * headDim][hiddenSize]`. */
  readonly vProj: Float32Array;
  /** `[hiddenSize][numAttentionHeads * headDim]`. */
  readonly oProj: Float32Array;
  /** RMSNorm before the MLP, `[hiddenSize]`. */
  readonly postAttentionLayernorm: Float32Array;
  /** `[intermediateSize][hiddenSize]`. */
  readonly gateProj: Float32Array;
  /** `[intermediateSize][hiddenSize]`. */
  readonly upProj: Float32Array;
  /** `[hiddenSize][intermediateSize]`. */
  readonly downProj: Float32Array;
}

/**
 * All weights of a Llama-family model in f32, plus its config. The arrays are owned by whoever
 * holds this object; models built from it read them without copying and never write to them.
 */
export interface ModelWeights {
  readonly config: ModelConfig;
  /** `[vocabSize][hiddenSize]`. */
  readonly embedTokens: Float32Array;
  /** One entry per layer. */
  readonly layers: readonly LayerWeights[];
  /** Final RMSNorm, `[hiddenSize]`. */
  readonly norm: Float32Array;
  /** LM head `[vocabSize][hiddenSize]`; the same array as `embedTokens` when tied. */
  readonly lmHead: Float32Array;
}

/** One named weight tensor with its Hugging Face name and shape. */
export interface NamedWeight {
  /** Hugging Face tensor name, e.g. `model.layers.0.self_attn.q_proj.weight`. */
  readonly name: string;
  /** Shape, outermost first. */
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Hugging Face names of the tensors of one layer, in checkpoint order, with their field. */
const LAYER_TENSORS = [
  ["input_layernorm.weight", "inputLayernorm"],
  ["self_attn.q_proj.weight", "qProj"],
  ["self_attn.k_proj.weight", "kProj"],
  ["self_attn.v_proj.weight", "vProj"],
  ["self_attn.o_proj.weight", "oProj"],
  ["post_attention_layernorm.weight", "postAttentionLayernorm"],
  ["mlp.gate_proj.weight", "gateProj"],
  ["mlp.up_proj.weight", "upProj"],
  ["mlp.down_proj.weight", "downProj"],
] as const;

/** Field of {@link LayerWeights}. */
export type LayerWeightName = (typeof LAYER_TENSORS)[number][1];

function layerShape(config: ModelConfig, field: LayerWeightName): number[] {
  const h = config.hiddenSize;
  const q = config.numAttentionHeads * config.headDim;
  const kv = config.numKeyValueHeads * config.headDim;
  switch (field) {
    case "inputLayernorm":
    case "postAttentionLayernorm":
      return [h];
    case "qProj":
      return [q, h];
    case "kProj":
    case "vProj":
      return [kv, h];
    case "oProj":
      return [h, q];
    case "gateProj":
    case "upProj":
      return [config.intermediateSize, h];
    case "downProj":
      return [h, config.intermediateSize];
  }
}

/**
 * The expected tensors of a model with `config`, in canonical order (embedding, layers in order,
 * final norm, then `lm_head.weight` unless tied), with Hugging Face names and shapes.
 */
export function toWeightLayout(
  config: ModelConfig,
): { readonly name: string; readonly shape: readonly number[] }[] {
  const out: { name: string; shape: number[] }[] = [
    { name: "model.embed_tokens.weight", shape: [config.vocabSize, config.hiddenSize] },
  ];
  for (let l = 0; l < config.numHiddenLayers; l++) {
    for (const [suffix, field] of LAYER_TENSORS) {
      out.push({ name: `model.layers.${l}.${suffix}`, shape: layerShape(config, field) });
    }
  }
  out.push({ name: "model.norm.weight", shape: [config.hiddenSize] });
  if (!config.tieWordEmbeddings) {
    out.push({ name: "lm_head.weight", shape: [config.vocabSize, config.hiddenSize] });
  }
  return out;
}

/** The tensors of `weights` with Hugging Face names, in the order of {@link toWeightLayout}. */
export function toNamedWeights(weights: ModelWeights): NamedWeight[] {
  const { config } = weights;
  const out: NamedWeight[] = [];
  const layout = toWeightLayout(config);
  let index = 0;
  const push = (data: Float32Array) => {
    const entry = layout[index++]!;
    out.push({ name: entry.name, shape: entry.shape, data });
  };
  push(weights.embedTokens);
  for (const layer of weights.layers) {
    for (const [, field] of LAYER_TENSORS) push(layer[field]);
  }
  push(weights.norm);
  if (!config.tieWordEmbeddings) push(weights.lmHead);
  return out;
}

/**
 * Builds {@link ModelWeights} from tensors looked up by Hugging Face name, in the order of
 * {@link toWeightLayout}, stopping at the first missing one: the work done is bounded by the
 * tensors that exist, whatever layer count the config claims. `get(name, shape)` returns the f32
 * data or undefined; `shape` is the shape the config implies. Throws INVALID_ARGUMENT (reason
 * `MODEL_WEIGHTS_INVALID`) naming the tensor and the expected vs actual element
 * count.
 */
export function fromNamedWeights(
  config: ModelConfig,
  get: (name: string, shape: readonly number[]) => Float32Array | undefined,
): ModelWeights {
  assertModelConfig(config);
  const take = (name: string, shape: readonly number[]): Float32Array => {
    const data = get(name, shape);
    if (data === undefined) {
      throw new OpalError(Code.INVALID_ARGUMENT, `weight ${name} missing`, {
        reason: Reason.MODEL_WEIGHTS_INVALID,
      });
    }
    const expected = shape.reduce((a, b) => a * b, 1);
    if (data.length !== expected) {
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `weight ${name} has ${data.length} elements (expected shape [${shape.join(", ")}] = ${expected})`,
        { reason: Reason.MODEL_WEIGHTS_INVALID },
      );
    }
    return data;
  };
  const embedTokens = take("model.embed_tokens.weight", [config.vocabSize, config.hiddenSize]);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.numHiddenLayers; l++) {
    const layer: Partial<Record<LayerWeightName, Float32Array>> = {};
    for (const [suffix, field] of LAYER_TENSORS) {
      layer[field] = take(`model.layers.${l}.${suffix}`, layerShape(config, field));
    }
    layers.push(layer as LayerWeights);
  }
  const norm = take("model.norm.weight", [config.hiddenSize]);
  const lmHead = config.tieWordEmbeddings
    ? embedTokens
    : take("lm_head.weight", [config.vocabSize, config.hiddenSize]);
  return { config, embedTokens, layers, norm, lmHead };
}

/** Throws INVALID_ARGUMENT unless every tensor of `weights` has the size its config implies. */
export function assertModelWeights(weights: ModelWeights): void {
  const named = new Map<string, Float32Array>();
  if (weights.layers.length !== weights.config.numHiddenLayers) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `weights have ${weights.layers.length} layers (config says ${weights.config.numHiddenLayers})`,
      { reason: Reason.MODEL_WEIGHTS_INVALID },
    );
  }
  for (const w of toNamedWeights(weights)) named.set(w.name, w.data);
  fromNamedWeights(weights.config, (name) => named.get(name));
  if (weights.lmHead.length !== weights.config.vocabSize * weights.config.hiddenSize) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `lm head has ${weights.lmHead.length} elements (expected ${weights.config.vocabSize * weights.config.hiddenSize})`,
      { reason: Reason.MODEL_WEIGHTS_INVALID },
    );
  }
}
