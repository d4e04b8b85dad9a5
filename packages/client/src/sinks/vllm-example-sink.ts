import { mkdir, open, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  assertVllmExampleTensorParallel,
  dtypeByteSize,
  encodeVllmExampleLayer,
  headCountOf,
  headDimOf,
  type KvDescriptor,
  type KvPart,
  transposeKvPart,
  VLLM_EXAMPLE_VERSIONS,
  type VllmExampleFolderNames,
  type VllmExampleVersion,
  type VllmFp8Cache,
  vllmExampleFolders,
  vllmExampleTokenCount,
  vllmLayerName,
  vllmStaticScale,
} from "@opal/kv";
import { invalidOption } from "../options/invalid-option";
import { partialSuffix, syncDirectory } from "./create-atomic-file";
import { createGuardedSink } from "./create-guarded-sink";
import type { KvSink } from "./kv-sink";
import { layerAsCache } from "./layer-as-cache";
import { assertFreeOutput, publishFolder } from "./publish-output";
import { descriptorMismatch, sinkCancelled } from "./sink-errors";

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
  /** The decoder's vLLM version ("0.28" for every release before 0.29); default the newest. */
  readonly vllmVersion?: VllmExampleVersion;
  /**
   * The decoder runs an fp8 KV cache: quantise the arriving f32/f16/bf16 layers with its static
   * per-layer scales (1.0 unless the checkpoint is calibrated) and write `U8`.
   */
  readonly fp8?: VllmFp8Cache;
  /** The decoder's tensor-parallel size; default 1. Above 1 only MLA caches are accepted. */
  readonly tensorParallelSize?: number;
  /**
   * Replace an existing non-empty `<hash>` folder at `commit` (moved aside, then deleted once the
   * new one is in place); default false: ALREADY_EXISTS at `open` and atomically at `commit`.
   */
  readonly replace?: boolean;
}

/** What {@link createVllmExampleSink} committed. */
export interface VllmExampleReceipt {
  /** The folder the decoder's scheduler checks for: `<directory>/<md5 of the first tokens ids>`. */
  readonly folder: string;
  /** Its tokens: the prompt truncated as vLLM does (`vllmExampleTokenCount`). */
  readonly tokens: number;
  /** The folder the decoder's worker loads; equals `folder` unless n is a multiple of the block. */
  readonly loadFolder: string;
  /** Its tokens (all n when n is a multiple of the block). */
  readonly loadTokens: number;
}

/**
 * A sink that writes vLLM's ExampleConnector disk handoff (docs/formats/vllm-example-connector.md)
 * in `vllmVersion`'s layout: `<directory>/<hash>/<layer_name>.safetensors`, tensor `kv_cache`. It
 * writes the folder the decoder's scheduler checks for (the first
 * `vllmExampleTokenCount(promptTokenIds.length, blockSizeTokens)` tokens) and, when n is a
 * multiple of the block size, also the folder its worker then loads (all n tokens), so a stock
 * vLLM finds and loads the cache. Layer files are written (and fsynced) as layers arrive into
 * temporary sibling folders `<hash>.partial-<random>`, renamed on `commit` (the load folder first,
 * so the checked folder never appears before the one loaded; an existing non-empty folder of
 * the same prompt only with `replace`, otherwise ALREADY_EXISTS at `open` and atomically at `commit`); `abort` deletes them. Memory: about one layer.
 *
 * `open` rejects with FAILED_PRECONDITION DESCRIPTOR_MISMATCH when the cache has scales (vLLM's
 * fp8 cache has static scales: use `fp8`), is int8, is fp8 while `fp8` asks to quantise, does not
 * start at token 0, holds fewer tokens than vLLM loads, or when the prompt is too short for vLLM
 * to store anything; when the decoder's tensor parallelism is above 1 for a non-MLA model (the
 * files carry no rank, every rank would load all heads); INVALID_ARGUMENT INVALID_FIELD for bad
 * options.
 */
export function createVllmExampleSink(options: VllmExampleSinkOptions): KvSink<VllmExampleReceipt> {
  assertSinkOptions(options);
  const { directory, layerNames, vllmVersion, fp8 } = options;
  const replace = options.replace ?? false;

  let descriptor: KvDescriptor | undefined;
  const folders: { folder: string; partial: string; stored: KvDescriptor }[] = [];

  return createGuardedSink<VllmExampleReceipt>({
    async open(d) {
      const names = checkDescriptor(d, options);
      descriptor = d;
      await mkdir(directory, { recursive: true });
      // The folder the worker loads first: commit renames in this order.
      const wanted = [[names.loadName, names.loadTokens] as const];
      if (names.checkName !== names.loadName) wanted.push([names.checkName, names.checkTokens]);
      for (const [name, tokens] of wanted) {
        const folder = join(directory, name);
        await assertFreeOutput(folder, replace);
        const partial = `${folder}${partialSuffix()}`;
        folders.push({
          folder,
          partial,
          stored: { ...d, numLayers: 1, layout: "nhd", tokenCount: tokens },
        });
        await mkdir(partial);
      }
    },

    async writeLayer(layer) {
      const d = descriptor as KvDescriptor;
      const name = layerNames?.[layer.layer] ?? vllmLayerName(layer.layer);
      for (const { partial, stored } of folders) {
        const parts: Partial<Record<KvPart, Uint8Array>> = {};
        for (const part of d.attention.kind === "mla"
          ? (["latent"] as const)
          : (["k", "v"] as const)) {
          parts[part] = firstTokensNhd(d, layer.parts[part] as Uint8Array, stored.tokenCount);
        }
        const layerFp8 = fp8 && {
          dtype: fp8.dtype,
          kScale: vllmStaticScale(fp8.kScale, layer.layer, "kScale"),
          vScale: vllmStaticScale(fp8.vScale, layer.layer, "vScale"),
        };
        const bytes = encodeVllmExampleLayer(layerAsCache(stored, { layer: 0, parts }), 0, {
          ...(vllmVersion ? { vllmVersion } : {}),
          ...(layerFp8 ? { fp8: layerFp8 } : {}),
        });
        const handle = await open(join(partial, `${name}.safetensors`), "wx");
        try {
          await handle.writeFile(bytes);
          await handle.sync();
        } finally {
          await handle.close();
        }
      }
    },

    async commit(_stats, signal) {
      for (const { partial } of folders) await syncDirectory(partial);
      if (signal.aborted) throw sinkCancelled("commit");
      for (const { folder, partial } of folders) {
        await publishFolder(partial, folder, replace);
        await syncDirectory(directory);
      }
      const load = folders[0] as (typeof folders)[number];
      const check = folders[folders.length - 1] as (typeof folders)[number];
      return {
        folder: check.folder,
        tokens: check.stored.tokenCount,
        loadFolder: load.folder,
        loadTokens: load.stored.tokenCount,
      };
    },

    async discard() {
      for (const { partial } of folders) await rm(partial, { recursive: true, force: true });
    },
  });
}

/** INVALID_ARGUMENT INVALID_FIELD for options no decoder could use. */
function assertSinkOptions(options: VllmExampleSinkOptions): void {
  const { directory, promptTokenIds: prompt, layerNames, vllmVersion, fp8 } = options;
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
  if (options.replace !== undefined && typeof options.replace !== "boolean")
    throw invalidOption("replace", "a boolean", options.replace);
  const given = options.blockSizeTokens;
  if (given !== undefined && (!Number.isSafeInteger(given) || given < 1))
    throw invalidOption("blockSizeTokens", "an integer >= 1", given);
  if (vllmVersion !== undefined && !VLLM_EXAMPLE_VERSIONS.includes(vllmVersion))
    throw invalidOption("vllmVersion", VLLM_EXAMPLE_VERSIONS.join(" or "), vllmVersion);
  const tp = options.tensorParallelSize ?? 1;
  if (!Number.isSafeInteger(tp) || tp < 1)
    throw invalidOption("tensorParallelSize", "an integer >= 1", options.tensorParallelSize);
  if (fp8 !== undefined) {
    if (fp8.dtype !== "fp8_e4m3fn" && fp8.dtype !== "fp8_e5m2")
      throw invalidOption("fp8.dtype", "fp8_e4m3fn or fp8_e5m2", fp8.dtype);
    for (const key of ["kScale", "vScale"] as const) {
      const scale = fp8[key];
      const count = typeof scale === "number" ? 1 : scale.length;
      for (let l = 0; l < count; l++) {
        try {
          vllmStaticScale(scale, l, key);
        } catch {
          throw invalidOption(`fp8.${key}`, "finite numbers > 0 (one, or one per layer)", scale);
        }
      }
    }
  }
}

/** The folders to write for a cache of `d`; FAILED_PRECONDITION DESCRIPTOR_MISMATCH when vLLM could not load it. */
function checkDescriptor(d: KvDescriptor, options: VllmExampleSinkOptions): VllmExampleFolderNames {
  const { promptTokenIds: prompt, layerNames, fp8 } = options;
  const tp = options.tensorParallelSize ?? 1;
  if (d.scaleScheme !== "none")
    throw descriptorMismatch(
      "scaleScheme",
      "the ExampleConnector file carries no scales (vLLM's fp8 cache has static per-layer scales: pass fp8)",
      `the cache has ${d.scaleScheme} scales`,
    );
  if (d.dtype === "int8" || (fp8 && d.dtype.startsWith("fp8")))
    throw descriptorMismatch(
      "dtype",
      fp8 ? "an f32, f16 or bf16 cache to quantise to fp8" : "f32, f16, bf16 or fp8",
      `the cache is ${d.dtype}`,
    );
  try {
    assertVllmExampleTensorParallel(d, tp);
  } catch (error) {
    throw descriptorMismatch("tensorParallelSize", (error as Error).message, `${tp}`);
  }
  if (fp8) {
    for (const key of ["kScale", "vScale"] as const) {
      const scale = fp8[key];
      if (typeof scale !== "number" && scale.length !== d.numLayers)
        throw descriptorMismatch(
          "fp8",
          `${scale.length} ${key}s were given`,
          `the cache has ${d.numLayers} layers`,
        );
    }
  }
  const blockSize = options.blockSizeTokens ?? d.blockSizeTokens;
  if (vllmExampleTokenCount(prompt.length, blockSize) === 0)
    throw descriptorMismatch(
      "tokens",
      `vLLM stores no tokens for a prompt of ${prompt.length} at block size ${blockSize}`,
      `the cache holds ${d.tokenCount}`,
    );
  const names = vllmExampleFolders(prompt, blockSize, { mmHashes: options.mmHashes });
  if (d.tokenStart !== 0 || d.tokenCount < names.loadTokens)
    throw descriptorMismatch(
      "tokens",
      `vLLM loads tokens [0, ${names.loadTokens}) of the ${prompt.length}-token prompt`,
      `the cache holds tokens [${d.tokenStart}, ${d.tokenStart + d.tokenCount})`,
    );
  if (layerNames !== undefined && layerNames.length !== d.numLayers)
    throw descriptorMismatch(
      "layers",
      `${layerNames.length} layer names were given`,
      `the cache has ${d.numLayers} layers`,
    );
  return names;
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
