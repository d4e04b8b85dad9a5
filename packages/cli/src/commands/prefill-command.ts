import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import {
  assertFreeOutput,
  createOkvFileSink,
  createSafetensorsFileSink,
  createVllmExampleSink,
  type KvSink,
  startPrefill,
  type VllmExampleReceipt,
} from "@opal/client";
import { Code, OpalError } from "@opal/core";
import type { ModelInfo } from "@opal/driver";
import {
  type KvDtype,
  type KvLayout,
  VLLM_EXAMPLE_DEFAULT_VERSION,
  VLLM_EXAMPLE_VERSIONS,
  type VllmExampleVersion,
} from "@opal/kv";
import { createByteTokenizer } from "@opal/reference";
import { SingleBar } from "cli-progress";
import { Command, InvalidArgumentError, Option } from "commander";
import { createLmcacheFolderSink, createSglangFileSink } from "../decoder-file-sinks";
import { formatBytes, formatRate } from "../format-bytes";
import { loadTokenizer } from "../load-tokenizer";
import { parsePositiveInteger } from "../parse-positive-integer";
import { parseStaticScales } from "../parse-static-scales";
import { addTargetOptions, connectTarget, explain, type TargetFlags } from "../target-options";

interface PrefillFlags extends TargetFlags {
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

/** `opal prefill`: offload a prompt's prefill to a device and write the KV cache to a file. */
export function createPrefillCommand(): Command {
  const command = new Command("prefill")
    .description(
      "Offload a prompt's prefill to a device and write its KV cache (verified) to a file or folder.",
    )
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
    )
    .showHelpAfterError();
  return addTargetOptions(command).action(async (o: PrefillFlags) => {
    if ((o.format === "sglang" || o.format === "lmcache") && o.dtype.startsWith("fp8")) {
      throw new InvalidArgumentError(
        `--format ${o.format} takes f32, f16 or bf16 (got --dtype ${o.dtype})`,
      );
    }
    const vllm = o.format === "vllm-example";
    const fp8 = o.dtype === "fp8_e4m3fn" || o.dtype === "fp8_e5m2" ? o.dtype : undefined;
    if ((o.kScale || o.vScale) && !(vllm && fp8)) {
      throw new InvalidArgumentError(
        "--k-scale and --v-scale are the static scales of vLLM's fp8 cache: give them with --format vllm-example and --dtype fp8_e4m3fn or fp8_e5m2",
      );
    }
    const tokens = await readTokens(o);
    // Refused before the device does any work; the sinks check again, atomically, at commit.
    if (o.format !== "vllm-example") await assertFreeOutput(o.out, o.force === true);
    const device = connectTarget(o);
    let model: ModelInfo | undefined;
    const replace = o.force === true;
    const sink = (): KvSink<unknown> => {
      switch (o.format) {
        case "okv":
          return createOkvFileSink({ path: o.out, replace });
        case "safetensors":
          return createSafetensorsFileSink({ path: o.out, replace });
        case "vllm-example":
          return createVllmExampleSink({
            directory: o.out,
            promptTokenIds: tokens,
            blockSizeTokens: o.blockSize,
            vllmVersion: o.vllmVersion,
            tensorParallelSize: o.tensorParallelSize,
            ...(fp8
              ? { fp8: { dtype: fp8, kScale: oneOrAll(o.kScale), vScale: oneOrAll(o.vScale) } }
              : {}),
            replace,
          });
        case "sglang":
          return createSglangFileSink(o.out, model!, tokens.length, o.dtype, replace);
        case "lmcache":
          return createLmcacheFolderSink(o.out, replace);
      }
    };
    const bar =
      process.stderr.isTTY && !o.json
        ? new SingleBar({
            format: "KV {bar} {percentage}% | layer {value}/{total} | {received} | {rate}",
          })
        : undefined;
    try {
      if (o.prompt !== undefined && !o.tokenizer && !o.json) {
        // Bytes are the tokenizer of opal-tiny and opal-small only: say so for any other model.
        const models = await device.listModels({ timeoutMs: o.timeout });
        const info = models.find((m) => m.modelId === o.model);
        const bytes = createByteTokenizer().vocabSize;
        if (info && info.vocabSize !== bytes) {
          console.error(
            `opal: note: --prompt is tokenized as UTF-8 bytes, but ${o.model} has a vocabulary of ${info.vocabSize} (not ${bytes}); pass its tokenizer.json with --tokenizer`,
          );
        }
      }
      if (o.format === "sglang") {
        model = (await device.listModels()).find((m) => m.modelId === o.model);
        if (!model) {
          throw new OpalError(Code.FAILED_PRECONDITION, `model "${o.model}" is not loaded`, {
            reason: "MODEL_NOT_LOADED",
          });
        }
      }
      const run = startPrefill(
        device,
        {
          requestId: randomUUID(),
          modelId: o.model,
          promptTokenIds: tokens,
          // vLLM's fp8 cache has static per-layer scales, not per-token ones: the device sends
          // bf16 (the model's dtype) and the sink quantises with the decoder's scales, as vLLM's
          // cache write does.
          kvFormat: {
            dtype: vllm && fp8 ? "bf16" : o.dtype,
            scaleScheme: fp8 && !vllm ? "per_token" : "none",
            layout: o.layout,
            blockSizeTokens: o.blockSize,
          },
        },
        { sink, timeoutMs: o.timeout },
      );
      let received = 0;
      for await (const layer of run) {
        if (layer.layer === 0)
          bar?.start(layer.descriptor.numLayers, 0, { received: "", rate: "" });
        for (const part of Object.values(layer.parts)) received += part?.byteLength ?? 0;
        bar?.update(layer.layer + 1, {
          received: formatBytes(received),
          rate: formatRate(received, layer.elapsedMs),
        });
      }
      const outcome = await run.result;
      bar?.stop();
      const summary = {
        out: o.out,
        format: o.format,
        promptTokens: outcome.stats.promptTokens,
        kvBytes: outcome.transfer.kvBytes,
        layers: outcome.descriptor.numLayers,
        gigabytesPerSecond: Number(outcome.transfer.gigabytesPerSecond.toFixed(3)),
        timeToFirstLayerMs: Number(outcome.transfer.timeToFirstLayerMs.toFixed(1)),
        deviceTimeUs: outcome.stats.deviceTimeUs,
        energyJoules: outcome.stats.energyJoules,
        firstTokenId: outcome.stats.firstTokenId,
        attempts: outcome.transfer.attempts,
        resumes: outcome.transfer.resumes,
        ...(vllm ? { vllm: vllmSummary(o, outcome.receipt as VllmExampleReceipt) } : {}),
      };
      if (o.json) console.log(JSON.stringify(summary, null, 2));
      else {
        console.log(
          `wrote ${o.out} (${o.format}): ${summary.promptTokens} tokens, ${summary.kvBytes} bytes of KV in ${summary.layers} layers, ` +
            `${summary.gigabytesPerSecond} GB/s, first layer after ${summary.timeToFirstLayerMs} ms, device ${summary.deviceTimeUs} µs / ${summary.energyJoules.toFixed(4)} J, first token ${summary.firstTokenId}`,
        );
        if (summary.vllm) {
          const v = summary.vllm;
          console.log(
            `vLLM ${v.vllmVersion === "0.28" ? "<= 0.28" : ">= 0.29"} ExampleConnector: ${v.shape}, ${v.dtype}; checks ${v.checkFolder} (${v.checkTokens} tokens)` +
              (v.loadFolder === v.checkFolder
                ? ""
                : `, loads ${v.loadFolder} (${v.loadTokens} tokens)`),
          );
        }
      }
    } catch (error) {
      bar?.stop();
      throw explain(error, o.target);
    } finally {
      await device.close();
    }
  });
}

/** What the vllm-example sink wrote, for the summary. */
function vllmSummary(o: PrefillFlags, receipt: VllmExampleReceipt) {
  return {
    vllmVersion: o.vllmVersion,
    shape: o.vllmVersion === "0.28" ? "[2, T, H*D] (MLA [T, 576])" : "[T, H, K|V] (MLA [T, 576])",
    dtype: o.dtype.startsWith("fp8")
      ? `${o.dtype} as U8, k_scale ${(o.kScale ?? [1]).join(",")}, v_scale ${(o.vScale ?? [1]).join(",")}`
      : o.dtype,
    checkFolder: receipt.folder,
    checkTokens: receipt.tokens,
    loadFolder: receipt.loadFolder,
    loadTokens: receipt.loadTokens,
  };
}

/** A scale list of one entry stands for every layer; none is vLLM's default 1.0. */
function oneOrAll(scales: number[] | undefined): number | number[] {
  if (!scales) return 1;
  return scales.length === 1 ? (scales[0] as number) : scales;
}

/**
 * The prompt's token ids: `--prompt` as UTF-8 bytes after BOS, or `--tokens-file` (a JSON array or
 * whitespace-separated integers, at least one). INVALID_ARGUMENT naming the file and the first bad
 * value; NOT_FOUND when the file cannot be read.
 */
async function readTokens(o: PrefillFlags): Promise<Uint32Array> {
  if ((o.prompt === undefined) === (o.tokensFile === undefined)) {
    throw new InvalidArgumentError("give exactly one of --prompt and --tokens-file");
  }
  if (o.prompt !== undefined) {
    if (o.tokenizer) return (await loadTokenizer(o.tokenizer))(o.prompt);
    return createByteTokenizer().encode(o.prompt);
  }
  const file = o.tokensFile!;
  const text = (
    await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
      throw new OpalError(
        Code.NOT_FOUND,
        `cannot read --tokens-file ${file}: ${error.code ?? error.message}`,
      );
    })
  ).trim();
  let values: unknown[];
  if (text.startsWith("[")) {
    try {
      values = JSON.parse(text);
    } catch (error) {
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `--tokens-file ${file} is not a JSON array of token ids: ${(error as Error).message}`,
      );
    }
  } else {
    values =
      text === ""
        ? []
        : text.split(/\s+/).map((word) => (/^\d+$/.test(word) ? Number(word) : word));
  }
  const bad = values.findIndex(
    (v) => !(Number.isInteger(v) && (v as number) >= 0 && (v as number) < 2 ** 32),
  );
  if (bad >= 0) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `--tokens-file ${file} must hold token ids, whole numbers in 0..${2 ** 32 - 1} (got ${JSON.stringify(values[bad])} at index ${bad})`,
    );
  }
  if (values.length === 0) {
    throw new OpalError(Code.INVALID_ARGUMENT, `--tokens-file ${file} holds no token ids`);
  }
  return Uint32Array.from(values as number[]);
}
