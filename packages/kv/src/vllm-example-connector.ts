import { createHash, randomBytes } from "node:crypto";
import { type FileHandle, mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { Code, OpalError } from "@opal/core";
import {
  assertValidDescriptor,
  dtypeByteSize,
  headCountOf,
  headDimOf,
  type KvDescriptor,
  type KvPart,
  partByteLength,
  partsOf,
} from "./descriptor";
import { fromKvParts, type KvCache } from "./kv-cache";
import { KvFormatError } from "./kv-format-error";
import { transposeKvPart } from "./to-kv-layout";
import {
  decodeVllmExampleLayer,
  encodeVllmExampleLayer,
  type VllmExampleLayerOptions,
} from "./vllm-example-layer";

/**
 * Tokens vLLM's ExampleConnector stores for a prompt of `promptTokenCount` tokens:
 * `align_to_block_size(n) = (n - 1) // block_size * block_size` (0 when n <= 1). The decode side
 * looks the folder up with the prompt plus one generated token, which gives the same count.
 * Throws OUT_OF_RANGE unless `promptTokenCount` is an integer >= 0 and `blockSizeTokens` an
 * integer >= 1.
 */
export function vllmExampleTokenCount(promptTokenCount: number, blockSizeTokens: number): number {
  if (!Number.isSafeInteger(promptTokenCount) || promptTokenCount < 0) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `promptTokenCount ${promptTokenCount}, expected an integer >= 0`,
      { field: "promptTokenCount" },
    );
  }
  if (!Number.isSafeInteger(blockSizeTokens) || blockSizeTokens < 1) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `blockSizeTokens ${blockSizeTokens}, expected an integer >= 1`,
      { field: "blockSizeTokens" },
    );
  }
  if (promptTokenCount <= 1) return 0;
  return Math.floor((promptTokenCount - 1) / blockSizeTokens) * blockSizeTokens;
}

/**
 * The folder name vLLM's ExampleConnector uses for these (already truncated) token ids: MD5 hex of
 * the int64 little-endian bytes of the ids, followed by the UTF-8 of `mmHashes.join("-")` when there
 * are multimodal hashes. (vLLM falls back to SHA-256 only on FIPS hosts without MD5.) Throws
 * OUT_OF_RANGE for an id that is not a safe integer.
 */
export function vllmExampleFolderName(
  tokenIds: ArrayLike<number>,
  options: { mmHashes?: readonly string[] } = {},
): string {
  const ids = new BigInt64Array(tokenIds.length);
  for (let i = 0; i < tokenIds.length; i++) {
    const id = tokenIds[i];
    if (typeof id !== "number" || !Number.isSafeInteger(id)) {
      throw new KvFormatError("OUT_OF_RANGE", `token id ${id} at index ${i} is not an integer`, {
        field: `tokenIds[${i}]`,
      });
    }
    ids[i] = BigInt(id);
  }
  const hash = createHash("md5").update(new Uint8Array(ids.buffer));
  if (options.mmHashes && options.mmHashes.length > 0)
    hash.update(options.mmHashes.join("-"), "utf8");
  return hash.digest("hex");
}

/** vLLM's attention layer name of decoder layer `layer` in Llama-style models. */
export function vllmLayerName(layer: number): string {
  return `model.layers.${layer}.self_attn.attn`;
}

/** The two folders a decoder's ExampleConnector uses for one prompt (see {@link vllmExampleFolders}). */
export interface VllmExampleFolderNames {
  /** Tokens in the folder the scheduler checks for (`align_to_block_size(L - 1)`, L = n + 1). */
  readonly checkTokens: number;
  /** Its name (md5 of the first `checkTokens` ids [+ mm hashes]). */
  readonly checkName: string;
  /** Tokens in the folder the worker loads (`make_meta`: `align_to_block_size(L)`). */
  readonly loadTokens: number;
  /** Its name; equals `checkName` unless n is a multiple of the block size. */
  readonly loadName: string;
}

/**
 * The folders vLLM's ExampleConnector uses when the decoder is given the `n`-token prompt plus the
 * one token the prefill generated (L = n + 1 tokens, as its comments assume): the scheduler checks
 * that the folder of the first `align_to_block_size(L - 1)` tokens exists, the worker then loads
 * the folder of the first `align_to_block_size(L)` tokens. When n is a multiple of the block size
 * these differ (n - block vs n tokens) and both must exist. OUT_OF_RANGE when n holds less than
 * one block plus one token (vLLM stores nothing then) or for bad ids.
 */
export function vllmExampleFolders(
  promptTokenIds: ArrayLike<number>,
  blockSizeTokens: number,
  options: { mmHashes?: readonly string[] } = {},
): VllmExampleFolderNames {
  const n = promptTokenIds.length;
  const checkTokens = vllmExampleTokenCount(n, blockSizeTokens);
  if (checkTokens === 0) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `vLLM's ExampleConnector stores no tokens of a ${n}-token prompt at block size ${blockSizeTokens}`,
      { field: "promptTokenIds" },
    );
  }
  const loadTokens = vllmExampleTokenCount(n + 1, blockSizeTokens);
  const name = (tokens: number) =>
    vllmExampleFolderName(Array.prototype.slice.call(promptTokenIds, 0, tokens), options);
  return { checkTokens, checkName: name(checkTokens), loadTokens, loadName: name(loadTokens) };
}

/**
 * Refuses a cache a tensor-parallel decoder could not load: the file names carry no TP rank and
 * every rank loads the same `<layer>.safetensors` into its own slice of the heads, so only MLA
 * (one latent head, replicated on every rank) works with TP > 1; a non-MLA cache must also hold
 * every KV head. UNSUPPORTED_LAYOUT naming why; OUT_OF_RANGE for a bad size.
 */
export function assertVllmExampleTensorParallel(
  descriptor: KvDescriptor,
  tensorParallelSize = 1,
): void {
  if (!Number.isSafeInteger(tensorParallelSize) || tensorParallelSize < 1) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `tensorParallelSize ${tensorParallelSize}, expected an integer >= 1`,
      { field: "tensorParallelSize" },
    );
  }
  const a = descriptor.attention;
  if (a.kind === "mla") return;
  const whole = descriptor.headRange.start === 0 && descriptor.headRange.count === a.numKvHeads;
  if (tensorParallelSize > 1) {
    throw new KvFormatError(
      "UNSUPPORTED_LAYOUT",
      `vLLM's ExampleConnector names files by layer only, with no TP rank: every rank of a decoder with tensor parallelism ${tensorParallelSize} would load the same file of all ${a.numKvHeads} KV heads into its ${a.numKvHeads / tensorParallelSize}-head slice, which fails; only MLA models (one latent head on every rank) can take this folder with TP > 1`,
      { field: "tensorParallelSize" },
    );
  }
  if (!whole) {
    throw new KvFormatError(
      "UNSUPPORTED_LAYOUT",
      `the cache holds KV heads [${descriptor.headRange.start}, ${descriptor.headRange.start + descriptor.headRange.count}) of ${a.numKvHeads}; vLLM's ExampleConnector file holds a layer's heads and a TP-1 decoder loads all ${a.numKvHeads}`,
      { field: "headRange" },
    );
  }
}

/**
 * The file names (without `.safetensors`) of `numLayers` layers: `layerNames`, or
 * {@link vllmLayerName}. Names must be distinct plain file names (letters, digits, `_`, `.`, `-`;
 * not `.` or `..`) so that every layer gets its own file inside the folder: OUT_OF_RANGE otherwise,
 * SHAPE_MISMATCH when the count differs from `numLayers`.
 */
function layerFileNames(numLayers: number, layerNames: readonly string[] | undefined): string[] {
  if (layerNames === undefined)
    return Array.from({ length: numLayers }, (_, l) => vllmLayerName(l));
  if (layerNames.length !== numLayers) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `${layerNames.length} layer names, expected ${numLayers} (one per layer)`,
      { field: "layerNames" },
    );
  }
  layerNames.forEach((name, i) => {
    if (typeof name !== "string" || !/^[\w.-]+$/.test(name) || name === "." || name === "..") {
      throw new KvFormatError(
        "OUT_OF_RANGE",
        `layer name ${JSON.stringify(name)} is not a file name of letters, digits, _ . -`,
        { field: `layerNames[${i}]` },
      );
    }
    if (layerNames.indexOf(name) !== i) {
      throw new KvFormatError(
        "OUT_OF_RANGE",
        `layer name ${JSON.stringify(name)} is given for layers ${layerNames.indexOf(name)} and ${i}`,
        { field: `layerNames[${i}]` },
      );
    }
  });
  return [...layerNames];
}

/** Writes `bytes` to a new file at `path` and flushes it to disk. */
async function writeSynced(path: string, bytes: Uint8Array): Promise<void> {
  const handle: FileHandle = await open(path, "wx");
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Options of {@link writeVllmExampleFolder} and {@link readVllmExampleFolder}. */
export interface VllmExampleFolderOptions extends VllmExampleLayerOptions {
  /** vLLM's `shared_storage_path` (kv_connector_extra_config); vLLM's default is "/tmp". */
  readonly storagePath: string;
  /** The token ids the folder is named by (already truncated, see {@link vllmExampleFolders}). */
  readonly tokenIds: ArrayLike<number>;
  /** Multimodal hashes of the request; default none. */
  readonly mmHashes?: readonly string[];
  /**
   * Attention layer names, one per layer, each a plain file name; default {@link vllmLayerName}.
   */
  readonly layerNames?: readonly string[];
  /** The decoder's tensor-parallel size; default 1 (see {@link assertVllmExampleTensorParallel}). */
  readonly tensorParallelSize?: number;
  /**
   * `writeVllmExampleFolder` only: replace an existing non-empty `<md5>` folder (set aside, then
   * deleted once the new one is in place); default false: ALREADY_EXISTS, the folder untouched.
   */
  readonly replace?: boolean;
}

/**
 * Writes the first `tokenIds.length` tokens of `cache` as one ExampleConnector folder,
 * `<storagePath>/<md5>/<layer_name>.safetensors`, in `vllmVersion`'s layout (fp8 as `U8`). The
 * cache must start at token 0 and hold at least those tokens. Returns the folder.
 *
 * vLLM takes the folder's existence as "this prompt's KV is stored", so the folder appears only
 * complete: the files are written and flushed in a sibling `<md5>.partial-<random>`, which is
 * renamed to `<md5>` at the end. An existing non-empty `<md5>` folder is replaced only with
 * `replace` (otherwise ALREADY_EXISTS, and it is left as it was). On any failure the partial folder
 * is removed and the error rethrown; nothing appears under `<md5>`.
 */
export async function writeVllmExampleFolder(
  cache: KvCache,
  options: VllmExampleFolderOptions,
): Promise<string> {
  const d = cache.descriptor;
  const tokens = options.tokenIds.length;
  if (d.tokenStart !== 0 || d.tokenCount < tokens || tokens === 0) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `cache holds tokens [${d.tokenStart}, ${d.tokenStart + d.tokenCount}), expected [0, ${tokens}) (at least one token)`,
    );
  }
  assertVllmExampleTensorParallel(d, options.tensorParallelSize);
  const names = layerFileNames(d.numLayers, options.layerNames);
  const stored = d.tokenCount === tokens ? cache : firstTokens(cache, tokens);
  const folder = join(options.storagePath, vllmExampleFolderName(options.tokenIds, options));
  await mkdir(options.storagePath, { recursive: true });
  const partial = `${folder}.partial-${randomBytes(6).toString("hex")}`;
  await mkdir(partial);
  try {
    for (let layer = 0; layer < d.numLayers; layer++) {
      const bytes = encodeVllmExampleLayer(stored, layer, options);
      await writeSynced(join(partial, `${names[layer]}.safetensors`), bytes);
    }
    await publishFolder(partial, folder, options.replace ?? false);
  } catch (error) {
    await rm(partial, { recursive: true, force: true });
    throw error;
  }
  return folder;
}

/** Options of {@link writeVllmExampleHandoff}. */
export interface VllmExampleHandoffOptions extends Omit<VllmExampleFolderOptions, "tokenIds"> {
  /** The whole prompt (n tokens) the prefill ran; the decoder gets it plus one generated token. */
  readonly promptTokenIds: ArrayLike<number>;
  /** The decoder's block size in tokens; default the cache's `blockSizeTokens`. */
  readonly blockSizeTokens?: number;
}

/**
 * Writes everything a stock vLLM decoder's ExampleConnector needs to load this prompt: the folder
 * its load path opens, then (when different) the folder its scheduler checks for, each complete
 * before it appears (see {@link vllmExampleFolders}, {@link writeVllmExampleFolder}). The cache
 * must start at token 0 and hold `loadTokens` tokens (all n when n is a multiple of the block).
 */
export async function writeVllmExampleHandoff(
  cache: KvCache,
  options: VllmExampleHandoffOptions,
): Promise<VllmExampleFolderNames & { checkFolder: string; loadFolder: string }> {
  const { promptTokenIds, blockSizeTokens, ...rest } = options;
  const names = vllmExampleFolders(
    promptTokenIds,
    blockSizeTokens ?? cache.descriptor.blockSizeTokens,
    options,
  );
  const ids = (tokens: number) => Array.prototype.slice.call(promptTokenIds, 0, tokens) as number[];
  const loadFolder = await writeVllmExampleFolder(cache, {
    ...rest,
    tokenIds: ids(names.loadTokens),
  });
  const checkFolder =
    names.checkName === names.loadName
      ? loadFolder
      : await writeVllmExampleFolder(cache, { ...rest, tokenIds: ids(names.checkTokens) });
  return { ...names, checkFolder, loadFolder };
}

/** The first `tokens` tokens of `cache` (token 0 on), in its layout. */
function firstTokens(cache: KvCache, tokens: number): KvCache {
  const d = cache.descriptor;
  const small: KvDescriptor = { ...d, layout: "nhd", tokenCount: tokens };
  const layers = Array.from({ length: d.numLayers }, (_, layer) => {
    const parts: Partial<Record<KvPart, Uint8Array>> = {};
    for (const part of partsOf(d)) {
      const src =
        d.layout === "nhd"
          ? cache.part(layer, part)
          : transposeKvPart(cache.part(layer, part), {
              tokenCount: d.tokenCount,
              headCount: headCountOf(d),
              rowBytes: headDimOf(d) * dtypeByteSize(d.dtype),
              from: "hnd",
              to: "nhd",
            });
      parts[part] = src.subarray(0, partByteLength(small, part));
    }
    return parts;
  });
  return fromKvParts(small, layers);
}

/**
 * Renames the finished `partial` to `folder`, which the OS refuses onto a non-empty folder: then
 * ALREADY_EXISTS unless `replace`, which sets the old folder aside first and deletes it after.
 */
async function publishFolder(partial: string, folder: string, replace: boolean): Promise<void> {
  try {
    await rename(partial, folder);
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "";
    if (!["ENOTEMPTY", "EEXIST", "ENOTDIR", "EISDIR"].includes(code)) throw error;
    if (!replace)
      throw new OpalError(
        Code.ALREADY_EXISTS,
        `${folder} already exists and is not empty (pass replace: true to replace it)`,
      );
  }
  const old = `${partial}.old`;
  await rename(folder, old);
  await rename(partial, folder);
  await rm(old, { recursive: true, force: true });
}

/**
 * Reads an ExampleConnector folder (vLLM's or OPAL's, any version; `vllmVersion` to require one)
 * back into a cache of `descriptor`, whose `tokenCount` must equal `tokenIds.length`.
 */
export async function readVllmExampleFolder(
  descriptor: KvDescriptor,
  options: Omit<VllmExampleFolderOptions, "fp8" | "tensorParallelSize">,
): Promise<KvCache> {
  assertValidDescriptor(descriptor);
  const names = layerFileNames(descriptor.numLayers, options.layerNames);
  const folder = join(options.storagePath, vllmExampleFolderName(options.tokenIds, options));
  const layers: Partial<Record<KvPart, Uint8Array>>[] = [];
  for (let layer = 0; layer < descriptor.numLayers; layer++) {
    const bytes = await readFile(join(folder, `${names[layer]}.safetensors`));
    layers.push(
      decodeVllmExampleLayer(
        new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength),
        descriptor,
        options,
      ),
    );
  }
  return fromKvParts(descriptor, layers);
}
