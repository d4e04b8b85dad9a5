import { mkdir, open, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  dtypeByteSize,
  encodeVllmExampleLayer,
  headCountOf,
  headDimOf,
  type KvDescriptor,
  type KvPart,
  transposeKvPart,
  vllmExampleFolderName,
  vllmExampleTokenCount,
  vllmLayerName,
} from "@opal/kv";
import type { KvSink } from "../kv-sink";
import { partialSuffix, syncDirectory } from "./create-atomic-file";
import { createGuardedSink } from "./create-guarded-sink";
import { layerAsCache } from "./layer-as-cache";
import { assertFreeOutput, publishFolder } from "./publish-output";
import { descriptorMismatch, invalidOption, sinkCancelled } from "./sink-errors";

/** Options of {@link createVllmExampleSink}. */
export interface VllmExampleSinkOptions {
  /** vLLM's `shared_storage_path` (kv_connector_extra_config; vLLM's default "/tmp"). Created if missing. */
  readonly directory: string;
  /** The whole prompt's token ids, as the decoder's request will carry them (not truncated). */
  readonly promptTokenIds: ArrayLike<number>;
  /** The decoder's block size, in tokens; default the cache's `blockSizeTokens`. */
  readonly blockSizeTokens?: number;
  /** Attention layer names, one per layer; default `vllmLayerName(i)` (`model.layers.{i}.self_attn.attn`). */
  readonly layerNames?: readonly string[];
  /** Multimodal hashes of the request (mixed into the folder name); default none. */
  readonly mmHashes?: readonly string[];
  /**
   * Replace an existing non-empty `<hash>` folder at `commit` (moved aside, then deleted once the
   * new one is in place); default false: ALREADY_EXISTS at `open` and atomically at `commit`.
   */
  readonly replace?: boolean;
}

/** What {@link createVllmExampleSink} committed. */
export interface VllmExampleReceipt {
  /** The folder `<directory>/<md5 of the stored token ids>` the decoder's ExampleConnector loads. */
  readonly folder: string;
  /** Tokens stored: the prompt truncated as vLLM does (`vllmExampleTokenCount`). */
  readonly tokens: number;
}

/**
 * A sink that writes vLLM's ExampleConnector disk handoff (docs/formats/vllm-example-connector.md):
 * `<directory>/<hash>/<layer_name>.safetensors`, tensor `kv_cache`, holding the first
 * `vllmExampleTokenCount(promptTokenIds.length, blockSizeTokens)` tokens, as vLLM's store side does.
 * Layer files are written (and fsynced) as layers arrive into a temporary sibling folder
 * `<hash>.partial-<random>` (created exclusively), renamed to `<hash>` on `commit` (an existing
 * non-empty folder of the same prompt only with `replace`); `abort` deletes the temporary folder. Memory: about one layer.
 *
 * `open` rejects with FAILED_PRECONDITION DESCRIPTOR_MISMATCH when the cache has scales (the file
 * has none), does not start at token 0, holds fewer tokens than vLLM stores, or when the prompt is
 * too short for vLLM to store anything; INVALID_ARGUMENT INVALID_FIELD for bad options.
 */
export function createVllmExampleSink(options: VllmExampleSinkOptions): KvSink<VllmExampleReceipt> {
  const { directory, promptTokenIds: prompt, layerNames } = options;
  if (typeof directory !== "string" || directory.length === 0)
    throw invalidOption("directory", "a non-empty folder path", directory);
  if (!prompt || typeof prompt.length !== "number")
    throw invalidOption("promptTokenIds", "an array of token ids", prompt);
  for (let i = 0; i < prompt.length; i++) {
    const id = prompt[i];
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0)
      throw invalidOption(`promptTokenIds[${i}]`, "an integer >= 0", id);
  }
  layerNames?.forEach((name, i) => {
    // A layer name becomes a file name: no separators, no "." or "..".
    if (typeof name !== "string" || !/^[\w.-]+$/.test(name) || name === "." || name === "..")
      throw invalidOption(`layerNames[${i}]`, "a file name of letters, digits, _ . -", name);
  });
  const replace = options.replace ?? false;
  if (typeof replace !== "boolean") throw invalidOption("replace", "a boolean", replace);
  const given = options.blockSizeTokens;
  if (given !== undefined && (!Number.isSafeInteger(given) || given < 1))
    throw invalidOption("blockSizeTokens", "an integer >= 1", given);

  let descriptor: KvDescriptor | undefined;
  let stored: KvDescriptor | undefined;
  let folder = "";
  let partial = "";

  return createGuardedSink<VllmExampleReceipt>({
    async open(d) {
      if (d.scaleScheme !== "none")
        throw descriptorMismatch(
          "scaleScheme",
          "the ExampleConnector file carries no scales",
          `the cache has ${d.scaleScheme} scales`,
        );
      const blockSize = given ?? d.blockSizeTokens;
      const tokens = vllmExampleTokenCount(prompt.length, blockSize);
      if (tokens === 0)
        throw descriptorMismatch(
          "tokens",
          `vLLM stores no tokens for a prompt of ${prompt.length} at block size ${blockSize}`,
          `the cache holds ${d.tokenCount}`,
        );
      if (d.tokenStart !== 0 || d.tokenCount < tokens)
        throw descriptorMismatch(
          "tokens",
          `vLLM stores tokens [0, ${tokens}) of the ${prompt.length}-token prompt`,
          `the cache holds tokens [${d.tokenStart}, ${d.tokenStart + d.tokenCount})`,
        );
      if (layerNames !== undefined && layerNames.length !== d.numLayers)
        throw descriptorMismatch(
          "layers",
          `${layerNames.length} layer names were given`,
          `the cache has ${d.numLayers} layers`,
        );
      descriptor = d;
      stored = { ...d, numLayers: 1, layout: "nhd", tokenCount: tokens };
      const ids = Array.from({ length: tokens }, (_, i) => prompt[i] as number);
      folder = join(directory, vllmExampleFolderName(ids, { mmHashes: options.mmHashes }));
      await mkdir(directory, { recursive: true });
      await assertFreeOutput(folder, replace);
      partial = `${folder}${partialSuffix()}`;
      await mkdir(partial);
    },

    async writeLayer(layer) {
      const d = descriptor as KvDescriptor;
      const s = stored as KvDescriptor;
      const parts: Partial<Record<KvPart, Uint8Array>> = {};
      for (const part of d.attention.kind === "mla"
        ? (["latent"] as const)
        : (["k", "v"] as const)) {
        parts[part] = firstTokensNhd(d, layer.parts[part] as Uint8Array, s.tokenCount);
      }
      const bytes = encodeVllmExampleLayer(layerAsCache(s, { layer: 0, parts }), 0);
      const name = layerNames?.[layer.layer] ?? vllmLayerName(layer.layer);
      const handle = await open(join(partial, `${name}.safetensors`), "wx");
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
    },

    async commit(_stats, signal) {
      await syncDirectory(partial);
      if (signal.aborted) throw sinkCancelled("commit");
      await publishFolder(partial, folder, replace);
      partial = "";
      await syncDirectory(directory);
      return { folder, tokens: (stored as KvDescriptor).tokenCount };
    },

    async discard() {
      if (partial) await rm(partial, { recursive: true, force: true });
    },
  });
}

/** The first `tokens` tokens of a data part, token-major (`[tokens][heads][dim]`). */
function firstTokensNhd(d: KvDescriptor, part: Uint8Array, tokens: number): Uint8Array {
  const rowBytes = headDimOf(d) * dtypeByteSize(d.dtype);
  const headCount = headCountOf(d);
  const nhd =
    d.layout === "nhd"
      ? part
      : transposeKvPart(part, {
          tokenCount: d.tokenCount,
          headCount,
          rowBytes,
          from: "hnd",
          to: "nhd",
        });
  return nhd.subarray(0, tokens * headCount * rowBytes);
}
