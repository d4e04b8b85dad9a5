import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Code, OpalError, Reason } from "@opal/core";
import {
  decodeSafetensors,
  encodeSafetensors,
  fromFloat32,
  type SafetensorsTensor,
  toFloat32,
} from "@opal/kv";
import { fromHfConfig, type HfConfigJson, toHfConfig } from "./model-config";
import { fromNamedWeights, type ModelWeights, toNamedWeights } from "./model-weights";

/** Storage dtype of exported weights (safetensors `F32`, `F16`, `BF16`). */
export type HfWeightDtype = "f32" | "f16" | "bf16";

const SAFETENSORS_OF: Record<HfWeightDtype, "F32" | "F16" | "BF16"> = {
  f32: "F32",
  f16: "F16",
  bf16: "BF16",
};
const TORCH_DTYPE_OF = { f32: "float32", f16: "float16", bf16: "bfloat16" } as const;
const FROM_SAFETENSORS: Record<string, HfWeightDtype> = { F32: "f32", F16: "f16", BF16: "bf16" };

/** A Hugging Face Llama checkpoint in memory: `config.json` text and `model.safetensors` bytes. */
export interface HfCheckpoint {
  /** The text of `config.json`, or its parsed object. */
  readonly configJson: string | HfConfigJson;
  /** The bytes of `model.safetensors`, or of every shard (any order). */
  readonly safetensors: Uint8Array | readonly Uint8Array[];
}

function parseConfig(configJson: string | HfConfigJson): HfConfigJson {
  if (typeof configJson !== "string") return configJson;
  try {
    return JSON.parse(configJson) as HfConfigJson;
  } catch (error) {
    throw new OpalError(Code.INVALID_ARGUMENT, `config.json is not valid JSON: ${String(error)}`, {
      reason: Reason.MODEL_CONFIG_INVALID,
      cause: error,
    });
  }
}

/**
 * Decodes a Hugging Face Llama checkpoint: validates `config.json` ({@link fromHfConfig}) and reads
 * the tensors named as in `LlamaForCausalLM` (`model.embed_tokens.weight`,
 * `model.layers.{i}.self_attn.{q,k,v,o}_proj.weight`, `model.layers.{i}.mlp.{gate,up,down}_proj.weight`,
 * `model.layers.{i}.{input,post_attention}_layernorm.weight`, `model.norm.weight`, `lm_head.weight`
 * unless `tie_word_embeddings`), each F32, F16 or BF16 with exactly the expected shape, widened to f32
 * (a copy; the input bytes are not retained). Other tensors are ignored. Tensors are looked up in
 * order and the first missing one fails, so a config claiming more layers than the files hold costs
 * nothing. Throws INVALID_ARGUMENT with reason `MODEL_WEIGHTS_INVALID` (a missing
 * tensor, a wrong shape or dtype), or the `@opal/kv` safetensors errors for malformed files.
 */
export function decodeHfCheckpoint(checkpoint: HfCheckpoint): ModelWeights {
  const config = fromHfConfig(parseConfig(checkpoint.configJson));
  const files = Array.isArray(checkpoint.safetensors)
    ? (checkpoint.safetensors as readonly Uint8Array[])
    : [checkpoint.safetensors as Uint8Array];
  const tensors = new Map<string, SafetensorsTensor>();
  for (const bytes of files) {
    for (const [name, tensor] of decodeSafetensors(bytes).tensors) tensors.set(name, tensor);
  }
  return fromNamedWeights(config, (name, shape) => {
    const tensor = tensors.get(name);
    if (tensor === undefined) return undefined;
    if (tensor.shape.length !== shape.length || tensor.shape.some((d, i) => d !== shape[i])) {
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `weight ${name} has shape [${tensor.shape.join(", ")}] (expected [${shape.join(", ")}])`,
        { reason: Reason.MODEL_WEIGHTS_INVALID },
      );
    }
    const dtype = FROM_SAFETENSORS[tensor.dtype];
    if (dtype === undefined) {
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `weight ${name} has dtype ${tensor.dtype} (expected F32, F16 or BF16)`,
        { reason: Reason.MODEL_WEIGHTS_INVALID },
      );
    }
    return toFloat32(tensor.data, dtype);
  });
}

/** Options of {@link encodeHfCheckpoint} and {@link exportHfCheckpoint}. */
export interface EncodeHfCheckpointOptions {
  /** Storage dtype of the weights; default `f32`. f32 values are rounded to nearest even. */
  readonly dtype?: HfWeightDtype;
}

/** An encoded checkpoint: the two files of the folder. */
export interface EncodedHfCheckpoint {
  /** `config.json` text: sorted keys, 2-space indent, trailing newline (as `transformers` writes). */
  readonly configJson: string;
  /** `model.safetensors` bytes with metadata `{"format": "pt"}` (required by `transformers`). */
  readonly safetensors: Uint8Array;
}

/**
 * Encodes `weights` as a Hugging Face `LlamaForCausalLM` checkpoint: `config.json` from
 * {@link toHfConfig} (with `torch_dtype` matching `options.dtype`) and one `model.safetensors`
 * with the HF tensor names, `[out_features, in_features]` matrices, no `lm_head.weight` when tied.
 */
export function encodeHfCheckpoint(
  weights: ModelWeights,
  options: EncodeHfCheckpointOptions = {},
): EncodedHfCheckpoint {
  const dtype = options.dtype ?? "f32";
  if (!Object.hasOwn(SAFETENSORS_OF, dtype)) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `export dtype ${JSON.stringify(dtype)} unsupported (expected f32, f16 or bf16)`,
      { reason: Reason.MODEL_WEIGHTS_INVALID },
    );
  }
  const config = toHfConfig(weights.config, { torchDtype: TORCH_DTYPE_OF[dtype] });
  const tensors: [string, SafetensorsTensor][] = toNamedWeights(weights).map((w) => [
    w.name,
    { dtype: SAFETENSORS_OF[dtype], shape: w.shape, data: fromFloat32(w.data, dtype) },
  ]);
  const safetensors = encodeSafetensors(tensors, { metadata: { format: "pt" } });
  return { configJson: `${JSON.stringify(config, null, 2)}\n`, safetensors };
}

/**
 * Writes `weights` to the folder `dir` (created if needed) as `config.json` and `model.safetensors`
 * (see {@link encodeHfCheckpoint}), overwriting those files.
 */
export async function exportHfCheckpoint(
  weights: ModelWeights,
  dir: string,
  options: EncodeHfCheckpointOptions = {},
): Promise<void> {
  const encoded = encodeHfCheckpoint(weights, options);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "config.json"), encoded.configJson);
  await writeFile(join(dir, "model.safetensors"), encoded.safetensors);
}

/**
 * Reads a Hugging Face Llama checkpoint folder: `config.json` plus `model.safetensors`, or the
 * shards listed in `model.safetensors.index.json`. Throws NOT_FOUND (without a
 * reason: none of the protocol's applies) when the files are missing, and the errors of {@link decodeHfCheckpoint}.
 */
export async function loadHfCheckpoint(dir: string): Promise<ModelWeights> {
  const read = async (name: string): Promise<Buffer> => {
    try {
      return await readFile(join(dir, name));
    } catch (error) {
      throw new OpalError(Code.NOT_FOUND, `cannot read ${join(dir, name)}: ${String(error)}`, {
        cause: error,
      });
    }
  };
  const configJson = (await read("config.json")).toString("utf8");
  const single = await stat(join(dir, "model.safetensors")).then(
    () => true,
    () => false,
  );
  if (single) {
    const bytes = await read("model.safetensors");
    return decodeHfCheckpoint({
      configJson,
      safetensors: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    });
  }
  const index = parseConfig((await read("model.safetensors.index.json")).toString("utf8"));
  const weightMap = index.weight_map as Record<string, string> | undefined;
  if (typeof weightMap !== "object" || weightMap === null) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      "model.safetensors.index.json has no weight_map object",
      { reason: Reason.MODEL_WEIGHTS_INVALID },
    );
  }
  const shards: Uint8Array[] = [];
  for (const file of new Set(Object.values(weightMap))) {
    if (typeof file !== "string" || file.includes("/") || file.includes("\\")) {
      throw new OpalError(Code.INVALID_ARGUMENT, `invalid shard name ${JSON.stringify(file)}`, {
        reason: Reason.MODEL_WEIGHTS_INVALID,
      });
    }
    const bytes = await read(file);
    shards.push(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }
  return decodeHfCheckpoint({ configJson, safetensors: shards });
}
