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
} from "./descriptor";
import { fromKvParts, type KvCache } from "./kv-cache";
import { KvFormatError } from "./kv-format-error";
import {
  decodeSafetensors,
  encodeSafetensors,
  fromSafetensorsDtype,
  toSafetensorsDtype,
} from "./safetensors";
import { transposeKvPart } from "./to-kv-layout";

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

/**
 * One layer as the ExampleConnector's `<layer_name>.safetensors`: tensor `kv_cache` of shape
 * `[2, num_tokens, num_kv_heads * head_size]` (mha) or `[num_tokens, latent + rope]` (mla), in the
 * cache dtype, token-major. Scales are not stored (vLLM's file has none); quantised caches with
 * scales are rejected (UNSUPPORTED_LAYOUT).
 */
export function encodeVllmExampleLayer(cache: KvCache, layer: number): Uint8Array {
  const d = cache.descriptor;
  if (d.scaleScheme !== "none") {
    throw new KvFormatError(
      "UNSUPPORTED_LAYOUT",
      `the ExampleConnector file carries no scales (scaleScheme ${d.scaleScheme})`,
    );
  }
  const dtype = toSafetensorsDtype(d.dtype);
  const t = d.tokenCount;
  const width = headCountOf(d) * headDimOf(d);
  const nhd = (part: KvPart) => {
    const src = cache.part(layer, part);
    if (d.layout === "nhd") return src;
    return transposeKvPart(src, {
      tokenCount: t,
      headCount: headCountOf(d),
      rowBytes: headDimOf(d) * dtypeByteSize(d.dtype),
      from: "hnd",
      to: "nhd",
    });
  };
  if (d.attention.kind === "mla") {
    return encodeSafetensors([["kv_cache", { dtype, shape: [t, width], data: nhd("latent") }]]);
  }
  const k = nhd("k");
  const data = new Uint8Array(k.byteLength * 2);
  data.set(k, 0);
  data.set(nhd("v"), k.byteLength);
  return encodeSafetensors([["kv_cache", { dtype, shape: [2, t, width], data }]]);
}

/**
 * Parses one ExampleConnector layer file into parts of `descriptor` (its layout; token count,
 * heads and dtype must match: SHAPE_MISMATCH / UNSUPPORTED_DTYPE). Accepts `kv_cache` shaped
 * `[2, T, H*D]` or `[2, T, H, D]` (mha) and `[T, L+R]` or `[T, 1, L+R]` (mla).
 */
export function decodeVllmExampleLayer(
  bytes: Uint8Array,
  descriptor: KvDescriptor,
): Partial<Record<KvPart, Uint8Array>> {
  assertValidDescriptor(descriptor);
  const file = decodeSafetensors(bytes);
  const tensor = file.tensors.get("kv_cache");
  if (!tensor) throw new KvFormatError("SHAPE_MISMATCH", "file has no tensor kv_cache");
  if (fromSafetensorsDtype(tensor.dtype) !== descriptor.dtype) {
    throw new KvFormatError(
      "UNSUPPORTED_DTYPE",
      `kv_cache dtype ${tensor.dtype}, expected ${toSafetensorsDtype(descriptor.dtype)}`,
    );
  }
  const t = descriptor.tokenCount;
  const heads = headCountOf(descriptor);
  const dim = headDimOf(descriptor);
  const mla = descriptor.attention.kind === "mla";
  const shape = tensor.shape.join(",");
  const accepted = mla
    ? [`${t},${dim}`, `${t},1,${dim}`]
    : [`2,${t},${heads * dim}`, `2,${t},${heads},${dim}`];
  if (!accepted.includes(shape)) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `kv_cache shape [${shape}], expected [${accepted[0]}]`,
    );
  }
  const toLayout = (src: Uint8Array) =>
    descriptor.layout === "nhd"
      ? src.slice()
      : transposeKvPart(src, {
          tokenCount: t,
          headCount: heads,
          rowBytes: dim * dtypeByteSize(descriptor.dtype),
          from: "nhd",
          to: "hnd",
        });
  if (mla) return { latent: toLayout(tensor.data) };
  const half = partByteLength(descriptor, "k");
  return { k: toLayout(tensor.data.subarray(0, half)), v: toLayout(tensor.data.subarray(half)) };
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

/** Options of the ExampleConnector folder functions. */
export interface VllmExampleFolderOptions {
  /** vLLM's `shared_storage_path` (kv_connector_extra_config); vLLM's default is "/tmp". */
  readonly storagePath: string;
  /** The token ids the folder is named by (already truncated, see {@link vllmExampleTokenCount}). */
  readonly tokenIds: ArrayLike<number>;
  /** Multimodal hashes of the request; default none. */
  readonly mmHashes?: readonly string[];
  /**
   * Attention layer names, one per layer, each a plain file name; default {@link vllmLayerName}.
   */
  readonly layerNames?: readonly string[];
  /**
   * `writeVllmExampleFolder` only: replace an existing non-empty `<md5>` folder (set aside, then
   * deleted once the new one is in place); default false: ALREADY_EXISTS, the folder untouched.
   */
  readonly replace?: boolean;
}

/**
 * Writes `cache` as vLLM's ExampleConnector disk handoff: `<storagePath>/<md5>/<layer_name>.safetensors`.
 * The cache must start at token 0 and carry exactly `tokenIds.length` tokens. Returns the folder.
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
  if (d.tokenStart !== 0 || d.tokenCount !== options.tokenIds.length) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `cache holds tokens [${d.tokenStart}, ${d.tokenStart + d.tokenCount}), expected [0, ${options.tokenIds.length})`,
    );
  }
  const names = layerFileNames(d.numLayers, options.layerNames);
  const folder = join(options.storagePath, vllmExampleFolderName(options.tokenIds, options));
  await mkdir(options.storagePath, { recursive: true });
  const partial = `${folder}.partial-${randomBytes(6).toString("hex")}`;
  await mkdir(partial);
  try {
    for (let layer = 0; layer < d.numLayers; layer++) {
      const bytes = encodeVllmExampleLayer(cache, layer);
      await writeSynced(join(partial, `${names[layer]}.safetensors`), bytes);
    }
    await publishFolder(partial, folder, options.replace ?? false);
  } catch (error) {
    await rm(partial, { recursive: true, force: true });
    throw error;
  }
  return folder;
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

/** Reads an ExampleConnector folder back into a cache of `descriptor`. */
export async function readVllmExampleFolder(
  descriptor: KvDescriptor,
  options: VllmExampleFolderOptions,
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
      ),
    );
  }
  return fromKvParts(descriptor, layers);
}
