import { createReadStream, existsSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { Code, OpalError, Reason } from "@opal/core";
import { SingleBar } from "cli-progress";
import { Command } from "commander";
import { formatBytes, formatRate } from "../format-bytes";
import { parsePositiveInteger } from "../parse-positive-integer";
import { addTargetOptions, connectTarget, explain, type TargetFlags } from "../target-options";

interface LoadFlags extends TargetFlags {
  modelId?: string;
  timeout: number;
  json?: boolean;
}

/** The folder's `config.json` text and `model.safetensors` path; NOT_FOUND or INVALID_ARGUMENT naming what is missing. */
async function readCheckpointFolder(folder: string) {
  const config = join(folder, "config.json");
  const weights = join(folder, "model.safetensors");
  if (!existsSync(folder) || !statSync(folder).isDirectory()) {
    throw new OpalError(
      Code.NOT_FOUND,
      `${folder} is not a folder (expected a Hugging Face checkpoint folder)`,
    );
  }
  if (!existsSync(config)) {
    throw new OpalError(
      Code.NOT_FOUND,
      `${folder} has no config.json (expected a Hugging Face checkpoint folder)`,
    );
  }
  if (!existsSync(weights)) {
    const sharded = existsSync(join(folder, "model.safetensors.index.json"));
    throw new OpalError(
      sharded ? Code.INVALID_ARGUMENT : Code.NOT_FOUND,
      sharded
        ? `${folder} holds sharded weights (model.safetensors.index.json); LoadModel takes one model.safetensors`
        : `${folder} has no model.safetensors`,
      { reason: Reason.MODEL_WEIGHTS_INVALID },
    );
  }
  return {
    configJson: await readFile(config, "utf8"),
    weights,
    byteLength: statSync(weights).size,
  };
}

/**
 * `opal load --target <device> <hf-folder>`: uploads a Hugging Face checkpoint (`config.json` and
 * one `model.safetensors`) with LoadModel, showing bytes sent and the rate. Idempotent: the device
 * answers "already loaded" for the same id and weights, and nothing changes.
 */
export function createLoadCommand(): Command {
  const command = new Command("load")
    .description(
      "Load a Hugging Face checkpoint folder (config.json + model.safetensors) onto a device. Idempotent: the same id and weights again is a no-op.",
    )
    .argument("<hf-folder>", "the checkpoint folder")
    .option("--model-id <id>", "the id prefill requests will use (default: the folder's name)")
    .option(
      "--timeout <ms>",
      "deadline for the upload, in ms",
      parsePositiveInteger("--timeout"),
      600_000,
    )
    .option("--json", "print the result as JSON");
  return addTargetOptions(command).action(async (folder: string, o: LoadFlags) => {
    const checkpoint = await readCheckpointFolder(folder);
    const modelId = o.modelId ?? basename(resolve(folder));
    const device = connectTarget(o);
    const bar =
      process.stderr.isTTY && !o.json
        ? new SingleBar({ format: "upload {bar} {percentage}% | {sent} of {size} | {rate}" })
        : undefined;
    const started = Date.now();
    async function* weights(): AsyncIterable<Uint8Array> {
      let sent = 0;
      bar?.start(checkpoint.byteLength, 0, {
        sent: "0 B",
        size: formatBytes(checkpoint.byteLength),
        rate: "-",
      });
      for await (const chunk of createReadStream(checkpoint.weights, { highWaterMark: 1 << 20 })) {
        sent += (chunk as Buffer).byteLength;
        bar?.update(sent, {
          sent: formatBytes(sent),
          rate: formatRate(sent, Date.now() - started),
        });
        yield chunk as Buffer;
      }
    }
    try {
      const result = await device.loadModel(
        {
          modelId,
          configJson: checkpoint.configJson,
          weights: weights(),
          weightsByteLength: checkpoint.byteLength,
        },
        { timeoutMs: o.timeout },
      );
      bar?.stop();
      const summary = {
        modelId: result.model.modelId,
        alreadyLoaded: result.alreadyLoaded,
        architecture: result.model.architecture,
        numLayers: result.model.numLayers,
        fingerprint: result.model.fingerprint,
        weightsBytes: checkpoint.byteLength,
        seconds: Number(((Date.now() - started) / 1000).toFixed(3)),
      };
      if (o.json) console.log(JSON.stringify(summary, null, 2));
      else if (result.alreadyLoaded) {
        console.log(
          `${modelId} is already loaded on ${o.target} with these weights; nothing changed`,
        );
      } else {
        console.log(
          `loaded ${modelId} on ${o.target}: ${summary.architecture}, ${summary.numLayers} layers, ${formatBytes(checkpoint.byteLength)} in ${summary.seconds} s`,
        );
      }
    } catch (error) {
      bar?.stop();
      throw explain(error, o.target);
    } finally {
      await device.close();
    }
  });
}
