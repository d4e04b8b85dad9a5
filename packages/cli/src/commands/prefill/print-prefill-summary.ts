import type { PrefillOutcome, VllmExampleReceipt } from "@opal/client";
import type { PrefillFlags } from "./add-prefill-options";

/**
 * Prints what `opal prefill` wrote: one line of figures (and one for a vllm-example folder), or
 * with `--json` the summary object.
 */
export function printPrefillSummary(o: PrefillFlags, outcome: PrefillOutcome<unknown>): void {
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
    ...(o.format === "vllm-example"
      ? { vllm: vllmSummary(o, outcome.receipt as VllmExampleReceipt) }
      : {}),
  };
  if (o.json) {
    console.log(JSON.stringify(summary, null, 2));
    return;
  }
  console.log(
    `wrote ${o.out} (${o.format}): ${summary.promptTokens} tokens, ${summary.kvBytes} bytes of KV in ${summary.layers} layers, ` +
      `${summary.gigabytesPerSecond} GB/s, first layer after ${summary.timeToFirstLayerMs} ms, device ${summary.deviceTimeUs} µs / ${summary.energyJoules.toFixed(4)} J, first token ${summary.firstTokenId}`,
  );
  if (summary.vllm) {
    const v = summary.vllm;
    console.log(
      `vLLM ${v.vllmVersion === "0.28" ? "<= 0.28" : ">= 0.29"} ExampleConnector: ${v.shape}, ${v.dtype}; checks ${v.checkFolder} (${v.checkTokens} tokens)` +
        (v.loadFolder === v.checkFolder ? "" : `, loads ${v.loadFolder} (${v.loadTokens} tokens)`),
    );
  }
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
