import { randomUUID } from "node:crypto";
import { type DeviceClient, startPrefill } from "@opal/client";
import type { KvDtype } from "@opal/kv";
import { serveMockDevice } from "@opal/mock";
import { Command, Option } from "commander";
import { parsePositiveInteger } from "../parse-positive-integer";
import { addTargetOptions, connectTarget, explain, type TargetFlags } from "../target-options";

interface BenchFlags extends Omit<TargetFlags, "target"> {
  target?: string;
  model: string;
  tokens: number;
  requests: number;
  dtype: KvDtype;
  json?: boolean;
}

/**
 * `opal bench`: measures a device end to end — prefills of a prompt length, verified into memory —
 * and reports KV throughput, time to first layer and latency percentiles. Without `--target` it
 * starts the mock (instant profile) in process. The repository's full benchmark suite, with
 * baselines, is `npm run bench`.
 */
export function createBenchCommand(): Command {
  const command = new Command("bench")
    .description(
      "Measure a device: KV GB/s, time to first layer and latency percentiles (without --target: the mock, in process).",
    )
    .option("--model <id>", "model id on the device", "llama-3-8b")
    .option("--tokens <n>", "prompt tokens per prefill", parsePositiveInteger("--tokens"), 1024)
    .option(
      "--requests <n>",
      "prefills to run, one after another",
      parsePositiveInteger("--requests"),
      5,
    )
    .addOption(
      new Option("--dtype <dtype>", "KV dtype").choices(["f32", "f16", "bf16"]).default("bf16"),
    )
    .option("--json", "print the result as JSON")
    .showHelpAfterError();
  addTargetOptions(command);
  // --target is optional here: without it, a mock is started.
  const target = command.options.find((option) => option.long === "--target");
  if (target) target.mandatory = false;
  return command.action(async (o: BenchFlags) => {
    const mock = o.target
      ? undefined
      : await serveMockDevice({ profile: "instant", models: [o.model] });
    const address = o.target ?? mock!.address;
    const device: DeviceClient = connectTarget({ ...o, target: address });
    const verifyOnly = () => ({ open() {}, writeLayer() {}, commit: () => null, abort() {} });
    const latencies: number[] = [];
    const firstLayers: number[] = [];
    let bytes = 0;
    let streamSeconds = 0;
    try {
      for (let i = 0; i < o.requests; i++) {
        const started = performance.now();
        const outcome = await startPrefill(
          device,
          {
            requestId: randomUUID(),
            modelId: o.model,
            promptTokenIds: Uint32Array.from({ length: o.tokens }, (_, t) => (t * 7 + i) % 250),
            kvFormat: { dtype: o.dtype, scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
          },
          { sink: verifyOnly },
        ).result;
        latencies.push(performance.now() - started);
        firstLayers.push(outcome.transfer.timeToFirstLayerMs);
        bytes += outcome.transfer.kvBytes;
        streamSeconds += outcome.transfer.streamSeconds;
      }
    } catch (error) {
      throw explain(error, address);
    } finally {
      await device.close();
      await mock?.close({ graceMs: 100 });
    }
    const result = {
      target: o.target ?? "in-process mock (instant)",
      model: o.model,
      promptTokens: o.tokens,
      requests: o.requests,
      kvBytesPerRequest: bytes / o.requests,
      gigabytesPerSecond: Number((bytes / streamSeconds / 1e9).toFixed(3)),
      timeToFirstLayerMsP50: round(percentile(firstLayers, 50)),
      latencyMsP50: round(percentile(latencies, 50)),
      latencyMsP99: round(percentile(latencies, 99)),
    };
    if (o.json) console.log(JSON.stringify(result, null, 2));
    else {
      console.log(
        `${result.requests} prefills of ${result.promptTokens} tokens on ${result.target} (${result.model}): ` +
          `${result.gigabytesPerSecond} GB/s of KV, first layer p50 ${result.timeToFirstLayerMsP50} ms, ` +
          `latency p50 ${result.latencyMsP50} ms, p99 ${result.latencyMsP99} ms`,
      );
    }
  });
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

function round(value: number): number {
  return Number(value.toFixed(1));
}
