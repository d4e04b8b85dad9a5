import {
  createOkvFileSink,
  createSafetensorsFileSink,
  createVllmExampleSink,
  type KvSink,
} from "@opal/client";
import type { ModelInfo } from "@opal/driver";
import type { KvDtype } from "@opal/kv";
import { createLmcacheFolderSink, createSglangFileSink } from "../../decoder-file-sinks";
import type { PrefillFlags } from "./add-prefill-options";

/**
 * The sink of `--format` writing to `--out` (replacing it with `--force`). `model` is the loaded
 * model's info, required for sglang; `fp8` the fp8 `--dtype`, whose vllm-example files are
 * quantised with `--k-scale` and `--v-scale`.
 */
export function createPrefillSink(
  o: PrefillFlags,
  prefill: {
    readonly tokens: Uint32Array;
    readonly model: ModelInfo | undefined;
    readonly fp8: Extract<KvDtype, "fp8_e4m3fn" | "fp8_e5m2"> | undefined;
  },
): KvSink<unknown> {
  const { tokens, model, fp8 } = prefill;
  const replace = o.force === true;
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
}

/** A scale list of one entry stands for every layer; none is vLLM's default 1.0. */
function oneOrAll(scales: number[] | undefined): number | number[] {
  if (!scales) return 1;
  return scales.length === 1 ? (scales[0] as number) : scales;
}
