import type { KvDtype, KvLayout, VllmExampleVersion } from "@opal/kv";
import { VLLM_EXAMPLE_DEFAULT_VERSION, VLLM_EXAMPLE_VERSIONS } from "@opal/kv";
import { type Command, Option } from "commander";
import { parsePositiveInteger } from "../../parse-positive-integer";
import { parseStaticScales } from "../../parse-static-scales";
import type { TargetFlags } from "../../target-options";

/** The parsed flags of `opal prefill`, as {@link addPrefillOptions} declares them. */
export interface PrefillFlags extends TargetFlags {
  prompt?: string;
  tokenizer?: string;
  tokensFile?: string;
  model: string;
  out: string;
  format: "okv" | "safetensors" | "vllm-example" | "sglang" | "lmcache";
  dtype: KvDtype;
  layout: KvLayout;
  blockSize: number;
  vllmVersion: VllmExampleVersion;
  kScale?: number[];
  vScale?: number[];
  tensorParallelSize: number;
  timeout: number;
  json?: boolean;
  force?: boolean;
}

/** Declares the flags of `opal prefill` (but the target's) on `command`; each states its default. */
export function addPrefillOptions(command: Command): Command {
  return command
    .option(
      "--prompt <text>",
      "prompt text, tokenized by --tokenizer (default: UTF-8 bytes after BOS, opal-tiny and opal-small's tokenizer)",
    )
    .option(
      "--tokenizer <tokenizer.json>",
      "the model's Hugging Face tokenizer.json (or its folder) for --prompt",
    )
    .option("--tokens-file <file>", "token ids: a JSON array or whitespace-separated integers")
    .requiredOption("--model <id>", "model id loaded on the device")
    .requiredOption(
      "--out <path>",
      "output file (okv, safetensors, sglang) or folder (vllm-example, lmcache)",
    )
    .addOption(
      new Option("--format <format>", "output format")
        .choices(["okv", "safetensors", "vllm-example", "sglang", "lmcache"])
        .default("okv"),
    )
    .addOption(
      new Option("--dtype <dtype>", "KV dtype")
        .choices(["f32", "f16", "bf16", "fp8_e4m3fn", "fp8_e5m2"])
        .default("bf16"),
    )
    .addOption(new Option("--layout <layout>", "KV layout").choices(["nhd", "hnd"]).default("nhd"))
    .option(
      "--block-size <tokens>",
      "block size in tokens",
      parsePositiveInteger("--block-size"),
      16,
    )
    .addOption(
      new Option(
        "--vllm-version <version>",
        "vllm-example: the decoder's vLLM (0.29 = 0.29 and later, [T, H, K|V] files; 0.28 = every release before, [2, T, H*D])",
      )
        .choices([...VLLM_EXAMPLE_VERSIONS])
        .default(VLLM_EXAMPLE_DEFAULT_VERSION),
    )
    .option(
      "--k-scale <scales>",
      "vllm-example with an fp8 --dtype: the decoder's static k_scale, one or one per layer (comma-separated; default 1.0)",
      parseStaticScales("--k-scale"),
    )
    .option(
      "--v-scale <scales>",
      "vllm-example with an fp8 --dtype: the decoder's static v_scale, one or one per layer (default 1.0)",
      parseStaticScales("--v-scale"),
    )
    .option(
      "--tensor-parallel-size <n>",
      "vllm-example: the decoder's tensor-parallel size (above 1 only MLA models can load the folder)",
      parsePositiveInteger("--tensor-parallel-size"),
      1,
    )
    .option(
      "--timeout <ms>",
      "deadline for the whole prefill, in ms",
      parsePositiveInteger("--timeout"),
      120_000,
    )
    .option("--json", "print the summary as JSON")
    .option(
      "--force",
      "replace an existing non-empty --out (atomically; without it, opal refuses to touch it)",
    );
}
