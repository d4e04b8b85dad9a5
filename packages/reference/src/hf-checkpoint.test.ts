import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@opal/core";
import { decodeSafetensors, encodeSafetensors, type SafetensorsTensor } from "@opal/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createByteTokenizer } from "./byte-tokenizer";
import { createPresetWeights } from "./create-preset-weights";
import {
  decodeHfCheckpoint,
  encodeHfCheckpoint,
  exportHfCheckpoint,
  loadHfCheckpoint,
} from "./hf-checkpoint";
import { createReferenceModel } from "./reference-model";

const prompt = createByteTokenizer().encode("Export me, load me, prefill me.");
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "opal-reference-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("exportHfCheckpoint / loadHfCheckpoint", () => {
  it("round-trips every preset in every dtype to identical caches and fingerprints", async () => {
    for (const name of ["opal-tiny", "opal-small"] as const) {
      const weights = createPresetWeights(name);
      const original = createReferenceModel(weights);
      const expected = original.prefill(prompt);
      for (const dtype of ["f32", "bf16", "f16"] as const) {
        const folder = join(dir, `${name}-${dtype}`);
        await exportHfCheckpoint(weights, folder, { dtype });
        const loaded = createReferenceModel(await loadHfCheckpoint(folder));
        expect(loaded.fingerprint).toBe(original.fingerprint);
        const got = loaded.prefill(prompt);
        expect(got.logits).toEqual(expected.logits);
        expect(got.cache.keys).toEqual(expected.cache.keys);
        expect(got.cache.values).toEqual(expected.cache.values);
      }
    }
  });

  it("writes exactly the Hugging Face Llama tensor names, shapes, dtype and config fields", async () => {
    const folder = join(dir, "names");
    await exportHfCheckpoint(createPresetWeights("opal-tiny"), folder, { dtype: "bf16" });
    const config = JSON.parse(await readFile(join(folder, "config.json"), "utf8"));
    expect(config).toMatchObject({
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      torch_dtype: "bfloat16",
      hidden_size: 64,
      intermediate_size: 192,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 16,
      vocab_size: 258,
      tie_word_embeddings: true,
      rope_theta: 10000,
      rope_scaling: null,
      hidden_act: "silu",
      bos_token_id: 256,
      eos_token_id: 257,
    });
    const file = decodeSafetensors(
      new Uint8Array(await readFile(join(folder, "model.safetensors"))),
    );
    expect(file.metadata).toEqual({ format: "pt" });
    const shapes = Object.fromEntries([...file.tensors].map(([n, t]) => [n, t.shape]));
    const layer = (i: number) => ({
      [`model.layers.${i}.input_layernorm.weight`]: [64],
      [`model.layers.${i}.self_attn.q_proj.weight`]: [64, 64],
      [`model.layers.${i}.self_attn.k_proj.weight`]: [32, 64],
      [`model.layers.${i}.self_attn.v_proj.weight`]: [32, 64],
      [`model.layers.${i}.self_attn.o_proj.weight`]: [64, 64],
      [`model.layers.${i}.post_attention_layernorm.weight`]: [64],
      [`model.layers.${i}.mlp.gate_proj.weight`]: [192, 64],
      [`model.layers.${i}.mlp.up_proj.weight`]: [192, 64],
      [`model.layers.${i}.mlp.down_proj.weight`]: [64, 192],
    });
    expect(shapes).toEqual({
      "model.embed_tokens.weight": [258, 64],
      ...layer(0),
      ...layer(1),
      "model.norm.weight": [64],
    });
    expect([...file.tensors.values()].every((t) => t.dtype === "BF16")).toBe(true);
  });

  it("loads sharded checkpoints through model.safetensors.index.json", async () => {
    const weights = createPresetWeights("opal-tiny");
    const { configJson, safetensors } = encodeHfCheckpoint(weights);
    const tensors = [...decodeSafetensors(safetensors).tensors];
    const half = Math.floor(tensors.length / 2);
    const shards = [tensors.slice(0, half), tensors.slice(half)];
    const folder = join(dir, "sharded");
    await exportHfCheckpoint(weights, folder);
    await rm(join(folder, "model.safetensors"));
    const weightMap: Record<string, string> = {};
    for (const [i, shard] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeFile(join(folder, file), encodeSafetensors(shard, { metadata: { format: "pt" } }));
      for (const [tensorName] of shard) weightMap[tensorName] = file;
    }
    await writeFile(
      join(folder, "model.safetensors.index.json"),
      JSON.stringify({ metadata: {}, weight_map: weightMap }),
    );
    await writeFile(join(folder, "config.json"), configJson);
    const loaded = createReferenceModel(await loadHfCheckpoint(folder));
    expect(loaded.fingerprint).toBe(createReferenceModel(weights).fingerprint);
  });

  it("reports missing tensors, wrong shapes, unsupported dtypes and missing folders clearly", async () => {
    const weights = createPresetWeights("opal-tiny");
    const { configJson, safetensors } = encodeHfCheckpoint(weights);
    const tensors = new Map<string, SafetensorsTensor>(decodeSafetensors(safetensors).tensors);
    const rebuild = (edit: (m: Map<string, SafetensorsTensor>) => void) => {
      const copy = new Map(tensors);
      edit(copy);
      return decodeHfCheckpoint({ configJson, safetensors: encodeSafetensors(copy) });
    };
    expect(() => rebuild((m) => m.delete("model.layers.1.mlp.up_proj.weight"))).toThrow(
      /weight model\.layers\.1\.mlp\.up_proj\.weight missing/,
    );
    expect(() =>
      rebuild((m) => {
        const t = m.get("model.norm.weight")!;
        m.set("model.norm.weight", { ...t, shape: [1, 64] });
      }),
    ).toThrow(/model\.norm\.weight has shape \[1, 64\] \(expected \[64\]\)/);
    expect(() =>
      rebuild((m) => {
        const t = m.get("model.norm.weight")!;
        m.set("model.norm.weight", { dtype: "I32", shape: [64], data: t.data });
      }),
    ).toThrow(expect.objectContaining({ reason: "MODEL_WEIGHTS_INVALID" }));
    // A config.json claiming 2^40 layers fails at the first missing tensor. (Before, a plan of
    // 9 tensors per claimed layer was built first: 1e6 layers took 20 s and 3 GB, 1e9 ran out of heap.)
    const claim = { ...JSON.parse(configJson), num_hidden_layers: 2 ** 40 };
    expect(() => decodeHfCheckpoint({ configJson: claim, safetensors })).toThrow(
      /weight model\.layers\.2\.input_layernorm\.weight missing/,
    );
    await expect(loadHfCheckpoint(join(dir, "nowhere"))).rejects.toMatchObject({
      code: Code.NOT_FOUND,
      reason: "",
    });
  });
});
