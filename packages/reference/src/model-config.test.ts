import { Code } from "@opal/core";
import { describe, expect, it } from "vitest";
import { toPresetConfig } from "./create-preset-weights";
import { assertModelConfig, fromHfConfig, type HfConfigJson, toHfConfig } from "./model-config";

/** config.json of meta-llama/Llama-3.1-8B as published. */
const llama31Json = {
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: 128001,
  hidden_act: "silu",
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: "llama",
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    factor: 8.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_max_position_embeddings: 8192,
    rope_type: "llama3",
  },
  rope_theta: 500000.0,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.43.0.dev0",
  use_cache: true,
  vocab_size: 128256,
};

describe("fromHfConfig", () => {
  it("reads a real Llama 3.1 config, deriving head_dim", () => {
    const config = fromHfConfig(llama31Json);
    expect(config).toEqual({
      vocabSize: 128256,
      hiddenSize: 4096,
      intermediateSize: 14336,
      numHiddenLayers: 32,
      numAttentionHeads: 32,
      numKeyValueHeads: 8,
      headDim: 128,
      rmsNormEps: 1e-5,
      ropeTheta: 500000,
      ropeScaling: {
        ropeType: "llama3",
        factor: 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositionEmbeddings: 8192,
      },
      maxPositionEmbeddings: 131072,
      tieWordEmbeddings: false,
      bosTokenId: 128000,
      eosTokenId: 128001,
    });
  });

  it("round-trips through toHfConfig, with eos lists and the old `type` key", () => {
    for (const name of ["opal-tiny", "opal-small"] as const) {
      const config = toPresetConfig(name);
      expect(fromHfConfig(toHfConfig(config))).toEqual(config);
    }
    const instruct = fromHfConfig({
      ...llama31Json,
      eos_token_id: [128001, 128008, 128009],
      rope_scaling: { ...llama31Json.rope_scaling, rope_type: undefined, type: "llama3" },
    });
    expect(instruct.eosTokenId).toEqual([128001, 128008, 128009]);
    expect(instruct.ropeScaling?.factor).toBe(8);
  });

  it("lists every missing or invalid field by its config.json name", () => {
    const { hidden_size: _h, vocab_size: _v, ...rest } = llama31Json;
    expect(() => fromHfConfig(rest)).toThrow(
      /hidden_size: missing.*vocab_size: missing|vocab_size: missing.*hidden_size: missing/,
    );
    try {
      fromHfConfig({ ...llama31Json, num_key_value_heads: 5, bos_token_id: 999999 });
      expect.unreachable();
    } catch (error) {
      expect(error).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "MODEL_CONFIG_INVALID" });
      const fields = (error as { fieldViolations: { field: string }[] }).fieldViolations.map(
        (v) => v.field,
      );
      expect(fields).toEqual(["num_key_value_heads", "bos_token_id"]);
    }
  });

  it("rejects rope scaling factors that are not finite, naming the field", () => {
    // JSON numbers beyond the float range parse as Infinity.
    const json = JSON.parse(
      JSON.stringify(llama31Json).replace('"factor":8', '"factor":1e400'),
    ) as HfConfigJson;
    expect((json.rope_scaling as { factor: number }).factor).toBe(Number.POSITIVE_INFINITY);
    expect(() => fromHfConfig(json)).toThrow(
      expect.objectContaining({ code: Code.INVALID_ARGUMENT, reason: "MODEL_CONFIG_INVALID" }),
    );
    const config = toPresetConfig("opal-small");
    for (const field of ["factor", "lowFreqFactor", "highFreqFactor"] as const) {
      const ropeScaling = { ...config.ropeScaling!, [field]: Number.POSITIVE_INFINITY };
      try {
        assertModelConfig({ ...config, ropeScaling });
        expect.unreachable(field);
      } catch (error) {
        expect(error).toMatchObject({
          code: Code.INVALID_ARGUMENT,
          reason: "MODEL_CONFIG_INVALID",
        });
        expect((error as { fieldViolations: unknown[] }).fieldViolations).toContainEqual({
          field: `ropeScaling.${field}`,
          description: "expected a finite number > 0, got Infinity",
        });
      }
    }
  });

  it("refuses architectures it does not implement with UNIMPLEMENTED", () => {
    for (const patch of [
      { model_type: "mistral" },
      { hidden_act: "gelu" },
      { attention_bias: true },
      { rope_scaling: { rope_type: "yarn", factor: 4 } },
    ]) {
      expect(() => fromHfConfig({ ...llama31Json, ...patch })).toThrow(
        expect.objectContaining({ code: Code.UNIMPLEMENTED, reason: "UNSUPPORTED_FEATURE" }),
      );
    }
  });
});

describe("toHfConfig", () => {
  it("writes the LlamaForCausalLM fields transformers expects", () => {
    const json = toHfConfig(toPresetConfig("opal-small"), { torchDtype: "bfloat16" });
    expect(json).toMatchObject({
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      hidden_act: "silu",
      torch_dtype: "bfloat16",
      head_dim: 32,
      num_key_value_heads: 4,
      tie_word_embeddings: false,
      rope_scaling: { rope_type: "llama3", factor: 8, original_max_position_embeddings: 1024 },
    });
    expect(Object.keys(json)).toEqual([...Object.keys(json)].sort());
  });
});
