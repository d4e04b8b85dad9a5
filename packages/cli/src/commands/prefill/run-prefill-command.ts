import { randomUUID } from "node:crypto";
import { assertFreeOutput, type DeviceClient, startPrefill } from "@opal/client";
import { Code, OpalError } from "@opal/core";
import type { ModelInfo } from "@opal/driver";
import { createByteTokenizer } from "@opal/reference";
import { SingleBar } from "cli-progress";
import { InvalidArgumentError } from "commander";
import { formatBytes, formatRate } from "../../format-bytes";
import { connectTarget, explain } from "../../target-options";
import type { PrefillFlags } from "./add-prefill-options";
import { createPrefillSink } from "./create-prefill-sink";
import { printPrefillSummary } from "./print-prefill-summary";
import { readTokens } from "./read-tokens";

/**
 * `opal prefill`'s action: checks the flags, reads the prompt, refuses an occupied `--out` before
 * the device works, prefills with a progress bar on a terminal, and prints the summary. Errors are
 * explained for the target; the device client is closed whatever happens.
 */
export async function runPrefillCommand(o: PrefillFlags): Promise<void> {
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
  const bar =
    process.stderr.isTTY && !o.json
      ? new SingleBar({
          format: "KV {bar} {percentage}% | layer {value}/{total} | {received} | {rate}",
        })
      : undefined;
  try {
    if (o.prompt !== undefined && !o.tokenizer && !o.json) await noteByteTokenizer(device, o);
    const model = o.format === "sglang" ? await loadedModel(device, o.model) : undefined;
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
      { sink: () => createPrefillSink(o, { tokens, model, fp8 }), timeoutMs: o.timeout },
    );
    let received = 0;
    for await (const layer of run) {
      if (layer.layer === 0) bar?.start(layer.descriptor.numLayers, 0, { received: "", rate: "" });
      for (const part of Object.values(layer.parts)) received += part?.byteLength ?? 0;
      bar?.update(layer.layer + 1, {
        received: formatBytes(received),
        rate: formatRate(received, layer.elapsedMs),
      });
    }
    const outcome = await run.result;
    bar?.stop();
    printPrefillSummary(o, outcome);
  } catch (error) {
    bar?.stop();
    throw explain(error, o.target);
  } finally {
    await device.close();
  }
}

/** Bytes are the tokenizer of opal-tiny and opal-small only: says so on stderr for any other model. */
async function noteByteTokenizer(device: DeviceClient, o: PrefillFlags): Promise<void> {
  const models = await device.listModels({ timeoutMs: o.timeout });
  const info = models.find((m) => m.modelId === o.model);
  const bytes = createByteTokenizer().vocabSize;
  if (info && info.vocabSize !== bytes) {
    console.error(
      `opal: note: --prompt is tokenized as UTF-8 bytes, but ${o.model} has a vocabulary of ${info.vocabSize} (not ${bytes}); pass its tokenizer.json with --tokenizer`,
    );
  }
}

/** The info of a loaded model; FAILED_PRECONDITION `MODEL_NOT_LOADED` when it is not loaded. */
async function loadedModel(device: DeviceClient, modelId: string): Promise<ModelInfo> {
  const model = (await device.listModels()).find((m) => m.modelId === modelId);
  if (!model) {
    throw new OpalError(Code.FAILED_PRECONDITION, `model "${modelId}" is not loaded`, {
      reason: "MODEL_NOT_LOADED",
    });
  }
  return model;
}
