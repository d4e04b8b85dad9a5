import { Code, type FieldViolation, OpalError, Reason } from "@opal/core";

/**
 * Llama 3 rotary frequency scaling (`rope_scaling` with `rope_type: "llama3"` in a Hugging Face
 * `config.json`). Frequencies whose wavelength exceeds `originalMaxPositionEmbeddings / lowFreqFactor`
 * are divided by `factor`; those shorter than `originalMaxPositionEmbeddings / highFreqFactor` are
 * kept; the band in between is interpolated smoothly (as `_compute_llama3_parameters` in transformers).
 */
export interface Llama3RopeScaling {
  readonly ropeType: "llama3";
  /** Divisor of low frequencies (8 for Llama 3.1). */
  readonly factor: number;
  /** Low-frequency factor (1 for Llama 3.1). */
  readonly lowFreqFactor: number;
  /** High-frequency factor (4 for Llama 3.1). */
  readonly highFreqFactor: number;
  /** Context length the model was pre-trained with, in tokens (8192 for Llama 3.1). */
  readonly originalMaxPositionEmbeddings: number;
}

/**
 * Architecture of a Llama-family decoder-only model: a camelCase mirror of the Hugging Face
 * `LlamaConfig` fields this package supports (SiLU activation, no attention or MLP biases).
 * Plain data; validate with {@link assertModelConfig}.
 */
export interface ModelConfig {
  /** Number of token ids, including special tokens. */
  readonly vocabSize: number;
  /** Width of the residual stream. */
  readonly hiddenSize: number;
  /** Width of the SwiGLU MLP. */
  readonly intermediateSize: number;
  /** Number of decoder layers. */
  readonly numHiddenLayers: number;
  /** Number of query heads. */
  readonly numAttentionHeads: number;
  /** Number of key/value heads (grouped-query attention); divides `numAttentionHeads`. */
  readonly numKeyValueHeads: number;
  /** Width of one attention head; even (rotary embeddings rotate pairs). */
  readonly headDim: number;
  /** Epsilon added to the mean square inside RMSNorm. */
  readonly rmsNormEps: number;
  /** Rotary base θ. */
  readonly ropeTheta: number;
  /** Llama 3 frequency scaling, or null for plain rotary embeddings. */
  readonly ropeScaling: Llama3RopeScaling | null;
  /** Longest sequence (past + new tokens) the model accepts, in tokens. */
  readonly maxPositionEmbeddings: number;
  /** True when the LM head reuses the token embedding matrix. */
  readonly tieWordEmbeddings: boolean;
  /** Token id of beginning-of-sequence. */
  readonly bosTokenId: number;
  /** Token id(s) that end generation. */
  readonly eosTokenId: number | readonly number[];
}

/** The end-of-sequence ids of a config as a list. */
export function toEosTokenIds(config: ModelConfig): readonly number[] {
  return typeof config.eosTokenId === "number" ? [config.eosTokenId] : config.eosTokenId;
}

function invalid(violations: FieldViolation[], what: string): OpalError {
  const detail = violations.map((v) => `${v.field}: ${v.description}`).join("; ");
  return new OpalError(Code.INVALID_ARGUMENT, `invalid ${what}: ${detail}`, {
    reason: Reason.MODEL_CONFIG_INVALID,
    fieldViolations: violations,
  });
}

function isPositiveInt(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}

function isTokenId(value: unknown, vocabSize: number): boolean {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value < vocabSize;
}

/**
 * Throws INVALID_ARGUMENT (reason `MODEL_CONFIG_INVALID`, one field violation per problem) unless
 * `config` is consistent: positive integer sizes, `numKeyValueHeads` dividing `numAttentionHeads`,
 * an even `headDim`, finite positive `rmsNormEps` and `ropeTheta`, token ids inside the vocabulary,
 * and a `ropeScaling` (if any) with finite positive factors, `highFreqFactor > lowFreqFactor` and a
 * positive integer `originalMaxPositionEmbeddings`.
 */
export function assertModelConfig(config: ModelConfig): void {
  const violations: FieldViolation[] = [];
  const ints = [
    "vocabSize",
    "hiddenSize",
    "intermediateSize",
    "numHiddenLayers",
    "numAttentionHeads",
    "numKeyValueHeads",
    "headDim",
    "maxPositionEmbeddings",
  ] as const;
  for (const field of ints) {
    if (!isPositiveInt(config[field])) {
      violations.push({ field, description: `expected a positive integer, got ${config[field]}` });
    }
  }
  if (
    isPositiveInt(config.numAttentionHeads) &&
    isPositiveInt(config.numKeyValueHeads) &&
    config.numAttentionHeads % config.numKeyValueHeads !== 0
  ) {
    violations.push({
      field: "numKeyValueHeads",
      description: `expected a divisor of numAttentionHeads ${config.numAttentionHeads}, got ${config.numKeyValueHeads}`,
    });
  }
  if (isPositiveInt(config.headDim) && config.headDim % 2 !== 0) {
    violations.push({
      field: "headDim",
      description: `expected an even number, got ${config.headDim}`,
    });
  }
  for (const field of ["rmsNormEps", "ropeTheta"] as const) {
    const value = config[field];
    if (typeof value !== "number" || !(value > 0) || !Number.isFinite(value)) {
      violations.push({ field, description: `expected a finite number > 0, got ${value}` });
    }
  }
  if (typeof config.tieWordEmbeddings !== "boolean") {
    violations.push({
      field: "tieWordEmbeddings",
      description: `expected a boolean, got ${config.tieWordEmbeddings}`,
    });
  }
  const vocab = isPositiveInt(config.vocabSize) ? config.vocabSize : Number.POSITIVE_INFINITY;
  if (!isTokenId(config.bosTokenId, vocab)) {
    violations.push({
      field: "bosTokenId",
      description: `expected a token id below vocabSize ${config.vocabSize}, got ${config.bosTokenId}`,
    });
  }
  const eos = typeof config.eosTokenId === "number" ? [config.eosTokenId] : config.eosTokenId;
  if (!Array.isArray(eos) || eos.length === 0 || !eos.every((id) => isTokenId(id, vocab))) {
    violations.push({
      field: "eosTokenId",
      description: `expected token id(s) below vocabSize ${config.vocabSize}, got ${JSON.stringify(config.eosTokenId)}`,
    });
  }
  const s = config.ropeScaling;
  if (s !== null) {
    if (typeof s !== "object" || s.ropeType !== "llama3") {
      violations.push({ field: "ropeScaling", description: "expected null or a llama3 scaling" });
    } else {
      for (const field of ["factor", "lowFreqFactor", "highFreqFactor"] as const) {
        if (typeof s[field] !== "number" || !(s[field] > 0) || !Number.isFinite(s[field])) {
          violations.push({
            field: `ropeScaling.${field}`,
            description: `expected a finite number > 0, got ${s[field]}`,
          });
        }
      }
      if (!(s.highFreqFactor > s.lowFreqFactor)) {
        violations.push({
          field: "ropeScaling.highFreqFactor",
          description: `expected > lowFreqFactor ${s.lowFreqFactor}, got ${s.highFreqFactor}`,
        });
      }
      if (!isPositiveInt(s.originalMaxPositionEmbeddings)) {
        violations.push({
          field: "ropeScaling.originalMaxPositionEmbeddings",
          description: `expected a positive integer, got ${s.originalMaxPositionEmbeddings}`,
        });
      }
    }
  }
  if (violations.length > 0) throw invalid(violations, "model config");
}

/** A Hugging Face `config.json` object (snake_case), as parsed JSON. */
export type HfConfigJson = Record<string, unknown>;

/**
 * The Hugging Face `config.json` of a Llama model (`architectures: ["LlamaForCausalLM"]`,
 * `model_type: "llama"`, SiLU, no biases), with `torch_dtype` set to `options.torchDtype`
 * (default `"float32"`). Keys are emitted in sorted order, as `transformers` writes them.
 */
export function toHfConfig(
  config: ModelConfig,
  options: { readonly torchDtype?: "float32" | "float16" | "bfloat16" } = {},
): HfConfigJson {
  assertModelConfig(config);
  const s = config.ropeScaling;
  const json: HfConfigJson = {
    architectures: ["LlamaForCausalLM"],
    attention_bias: false,
    attention_dropout: 0,
    bos_token_id: config.bosTokenId,
    eos_token_id:
      typeof config.eosTokenId === "number" ? config.eosTokenId : [...config.eosTokenId],
    head_dim: config.headDim,
    hidden_act: "silu",
    hidden_size: config.hiddenSize,
    initializer_range: 0.02,
    intermediate_size: config.intermediateSize,
    max_position_embeddings: config.maxPositionEmbeddings,
    mlp_bias: false,
    model_type: "llama",
    num_attention_heads: config.numAttentionHeads,
    num_hidden_layers: config.numHiddenLayers,
    num_key_value_heads: config.numKeyValueHeads,
    pretraining_tp: 1,
    rms_norm_eps: config.rmsNormEps,
    rope_scaling:
      s === null
        ? null
        : {
            factor: s.factor,
            high_freq_factor: s.highFreqFactor,
            low_freq_factor: s.lowFreqFactor,
            original_max_position_embeddings: s.originalMaxPositionEmbeddings,
            rope_type: "llama3",
          },
    rope_theta: config.ropeTheta,
    tie_word_embeddings: config.tieWordEmbeddings,
    torch_dtype: options.torchDtype ?? "float32",
    use_cache: true,
    vocab_size: config.vocabSize,
  };
  return json;
}

/**
 * Reads a Hugging Face Llama `config.json` object. Required: `vocab_size`, `hidden_size`,
 * `intermediate_size`, `num_hidden_layers`, `num_attention_heads`. Defaults as in `LlamaConfig`:
 * `num_key_value_heads` = `num_attention_heads`, `head_dim` = `hidden_size / num_attention_heads`,
 * `rms_norm_eps` 1e-6, `rope_theta` 10000, `rope_scaling` null, `max_position_embeddings` 2048,
 * `tie_word_embeddings` false, `bos_token_id` 1, `eos_token_id` 2.
 * Throws INVALID_ARGUMENT (reason `MODEL_CONFIG_INVALID`) listing every missing or invalid field, and
 * UNIMPLEMENTED (reason `UNSUPPORTED_FEATURE`) for features this package does not implement (another
 * `model_type`, activation, biases, or a rope scaling other than llama3).
 */
export function fromHfConfig(json: HfConfigJson): ModelConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `config.json must be an object, got ${typeof json}`,
      {
        reason: Reason.MODEL_CONFIG_INVALID,
      },
    );
  }
  const unsupported = (what: string) =>
    new OpalError(Code.UNIMPLEMENTED, `unsupported model: ${what}`, {
      reason: Reason.UNSUPPORTED_FEATURE,
    });
  if (json.model_type !== undefined && json.model_type !== "llama") {
    throw unsupported(`model_type "llama" expected, got ${JSON.stringify(json.model_type)}`);
  }
  const act = json.hidden_act ?? "silu";
  if (act !== "silu") throw unsupported(`hidden_act "silu" expected, got ${JSON.stringify(act)}`);
  for (const key of ["attention_bias", "mlp_bias"]) {
    if (json[key] === true) throw unsupported(`${key} true (only bias-free Llama is implemented)`);
  }
  const violations: FieldViolation[] = [];
  const need = (key: string): number => {
    const value = json[key];
    if (value === undefined) violations.push({ field: key, description: "missing" });
    else if (!isPositiveInt(value)) {
      violations.push({
        field: key,
        description: `expected a positive integer, got ${JSON.stringify(value)}`,
      });
    }
    return value as number;
  };
  const vocabSize = need("vocab_size");
  const hiddenSize = need("hidden_size");
  const intermediateSize = need("intermediate_size");
  const numHiddenLayers = need("num_hidden_layers");
  const numAttentionHeads = need("num_attention_heads");
  if (violations.length > 0) throw invalid(violations, "config.json");
  let ropeScaling: Llama3RopeScaling | null = null;
  const rs = json.rope_scaling;
  if (rs !== undefined && rs !== null) {
    if (typeof rs !== "object") {
      throw invalid(
        [{ field: "rope_scaling", description: "expected an object or null" }],
        "config.json",
      );
    }
    const r = rs as Record<string, unknown>;
    const type = r.rope_type ?? r.type;
    if (type === "llama3") {
      ropeScaling = {
        ropeType: "llama3",
        factor: r.factor as number,
        lowFreqFactor: r.low_freq_factor as number,
        highFreqFactor: r.high_freq_factor as number,
        originalMaxPositionEmbeddings: r.original_max_position_embeddings as number,
      };
    } else if (type !== "default") {
      throw unsupported(`rope_scaling type ${JSON.stringify(type)} (only llama3 is implemented)`);
    }
  }
  const config: ModelConfig = {
    vocabSize,
    hiddenSize,
    intermediateSize,
    numHiddenLayers,
    numAttentionHeads,
    numKeyValueHeads: (json.num_key_value_heads ?? numAttentionHeads) as number,
    headDim: (json.head_dim ?? hiddenSize / numAttentionHeads) as number,
    rmsNormEps: (json.rms_norm_eps ?? 1e-6) as number,
    ropeTheta: (json.rope_theta ?? 10000) as number,
    ropeScaling,
    maxPositionEmbeddings: (json.max_position_embeddings ?? 2048) as number,
    tieWordEmbeddings: (json.tie_word_embeddings ?? false) as boolean,
    bosTokenId: (json.bos_token_id ?? 1) as number,
    eosTokenId: (json.eos_token_id ?? 2) as number | number[],
  };
  try {
    assertModelConfig(config);
  } catch (error) {
    if (!(error instanceof OpalError)) throw error;
    // Report the config.json (snake_case) names.
    const snake = (field: string) => field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    const renamed = error.fieldViolations.map((v) => ({ ...v, field: snake(v.field) }));
    throw invalid(renamed, "config.json");
  }
  return config;
}
