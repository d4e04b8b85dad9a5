import { open, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { SAFETENSORS_DESCRIPTOR_KEY } from "@opal/client";
import { Code, OpalError } from "@opal/core";
import {
  cacheByteLength,
  decodeSafetensors,
  digestKvCache,
  fromLmcacheChunks,
  type KvDescriptor,
  type LmcacheMemoryFormat,
  OKV_MAGIC,
  type SafetensorsFile,
  toHex,
  type VllmExampleFit,
  vllmExampleFits,
} from "@opal/kv";

/** What `opal inspect` says about a KV cache another system's format holds. */
export interface ForeignReport {
  readonly file: string;
  readonly format: "vllm-example" | "vllm-example-storage" | "vllm-pool" | "sglang" | "lmcache";
  /** What was checked. */
  readonly verified: string;
  /** Human-readable lines, in order. */
  readonly lines: readonly string[];
  /** The facts behind the lines, for --json. */
  readonly details: Readonly<Record<string, unknown>>;
}

/**
 * Describes `path` when it is a KV cache in another system's format: a vLLM ExampleConnector
 * folder (or its storage path, or one of its layer files), a vLLM paged pool saved as
 * safetensors, SGLang token buffers (`opal prefill --format sglang`) or LMCache chunks
 * (`--format lmcache`). Undefined for OPAL's own files (`.okv`, safetensors with an OPAL
 * descriptor) and for paths it cannot read, which `readKvFile` reports.
 */
export async function inspectForeign(path: string): Promise<ForeignReport | undefined> {
  const info = await stat(path).catch(() => undefined);
  if (info?.isDirectory()) return inspectFolder(path);
  if (!info?.isFile() || (await startsWithOkvMagic(path))) return undefined;
  let file: SafetensorsFile;
  try {
    file = decodeSafetensors(new Uint8Array(await readFile(path)));
  } catch {
    return undefined;
  }
  if (file.metadata[SAFETENSORS_DESCRIPTOR_KEY]) return undefined;
  const names = [...file.tensors.keys()];
  if (names.some((n) => /^(k|v|kv)_buffer\.\d+$/.test(n))) return sglangReport(path, file);
  if (names.length === 1 && names[0] === "kv_cache") {
    const layer = exampleLayer(path.split("/").pop() as string, file);
    return {
      file: path,
      format: "vllm-example",
      verified: "the kv_cache tensor's size against its shape",
      lines: [`${path}: one vLLM ExampleConnector layer file`, ...layer.lines],
      details: layer.details,
    };
  }
  return poolReport(path, file);
}

async function startsWithOkvMagic(path: string): Promise<boolean> {
  const handle = await open(path, "r");
  try {
    const head = new Uint8Array(OKV_MAGIC.length);
    await handle.read(head, 0, head.length, 0);
    return OKV_MAGIC.every((byte, i) => head[i] === byte);
  } finally {
    await handle.close();
  }
}

/** How vLLM reads one `<layer>.safetensors` of an ExampleConnector folder. */
function exampleLayer(name: string, file: SafetensorsFile) {
  const tensor = file.tensors.get("kv_cache");
  if (!tensor) {
    throw new OpalError(Code.INVALID_ARGUMENT, `${name} has no kv_cache tensor`);
  }
  const fits = vllmExampleFits(tensor.shape);
  const lines = fits.map((f) => {
    const version = f.vllmVersion === "0.28" ? "vLLM <= 0.28" : "vLLM >= 0.29";
    const a = f.attention;
    const what =
      a.kind === "mla"
        ? `MLA, ${a.width} per token (latent + rope)`
        : a.numKvHeads > 0
          ? `${a.numKvHeads} KV heads of head size ${a.headDim}, K then V per head`
          : `K plane then V plane, ${tensor.shape[2]} = KV heads × head size`;
    return `  fits ${version} ${f.shapeName}: ${f.tokenCount} tokens, ${what}`;
  });
  if (fits.length === 0) lines.push(`  fits no vLLM ExampleConnector layout`);
  const dtype =
    tensor.dtype === "U8"
      ? "U8: vLLM's fp8 cache (allocated as uint8); real values are fp8 × the decoder's static k_scale / v_scale"
      : tensor.dtype;
  lines.unshift(`  ${name}: kv_cache [${tensor.shape.join(", ")}] ${dtype}`);
  return {
    lines,
    fits,
    details: { name, dtype: tensor.dtype, shape: tensor.shape, fits },
  };
}

async function inspectFolder(path: string): Promise<ForeignReport> {
  const entries = await readdir(path, { withFileTypes: true });
  if (entries.some((e) => e.isFile() && e.name === "manifest.json")) return lmcacheReport(path);
  const files = entries
    .filter((e) => e.isFile() && e.name.endsWith(".safetensors"))
    .map((e) => e.name)
    .sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  if (files.length > 0) return exampleFolderReport(path, await readExampleLayers(path, files));
  const folders: { path: string; layers: ExampleLayer[] }[] = [];
  for (const e of entries.filter((x) => x.isDirectory() && !x.name.includes(".partial-"))) {
    const inner = (await readdir(join(path, e.name))).filter((n) => n.endsWith(".safetensors"));
    if (inner.length > 0) {
      const folder = join(path, e.name);
      folders.push({ path: folder, layers: await readExampleLayers(folder, inner.sort()) });
    }
  }
  if (folders.length === 0) throw notACache(path, "it holds no safetensors files");
  // One storage path serves one model: a reading is kept only if every folder has it with the
  // same attention shape (folders differ only in token count). This tells [2, T, H*D] (vLLM
  // <= 0.28) from [T, H, C] with T = 2 (>= 0.29) once the path holds two prompt lengths.
  const perFolder = folders.map((f) => new Set(folderFits(f.layers).map(modelKey)));
  const shared = new Set(
    [...(perFolder[0] as Set<string>)].filter((k) => perFolder.every((keys) => keys.has(k))),
  );
  const reports = folders.map((f) =>
    exampleFolderReport(f.path, f.layers, (fit) => shared.has(modelKey(fit))),
  );
  const fits = (reports[0]?.details.fits ?? []) as VllmExampleFit[];
  return {
    file: path,
    format: "vllm-example-storage",
    verified: reports[0]!.verified,
    lines: [
      `${path}: vLLM ExampleConnector storage path, ${reports.length} prompt folders; fits ${fitSummary(fits, "no single vLLM layout (folders disagree)")}`,
      ...reports.flatMap((f) => f.lines),
    ],
    details: { fits, folders: reports.map((f) => ({ folder: f.file, ...f.details })) },
  };
}

function notACache(path: string, why: string): OpalError {
  return new OpalError(
    Code.INVALID_ARGUMENT,
    `${path} is a folder but not a KV cache (${why}): expected a vLLM ExampleConnector folder (<layer>.safetensors, tensor kv_cache), its storage path, or an LMCache folder (manifest.json)`,
  );
}

type ExampleLayer = ReturnType<typeof exampleLayer>;

async function readExampleLayers(path: string, files: readonly string[]): Promise<ExampleLayer[]> {
  const layers: ExampleLayer[] = [];
  for (const name of files) {
    let file: SafetensorsFile;
    try {
      file = decodeSafetensors(new Uint8Array(await readFile(join(path, name))));
    } catch (error) {
      throw notACache(path, `${name}: ${OpalError.from(error).rawMessage}`);
    }
    if (!file.tensors.has("kv_cache")) throw notACache(path, `${name} holds no kv_cache tensor`);
    layers.push(exampleLayer(name, file));
  }
  return layers;
}

const fitKey = (f: VllmExampleFit) => JSON.stringify(f);
/** A reading without its token count: the same model and vLLM version. */
const modelKey = (f: VllmExampleFit) => JSON.stringify([f.vllmVersion, f.shapeName, f.attention]);

/** The readings every layer file of a folder shares. */
function folderFits(layers: readonly ExampleLayer[]): VllmExampleFit[] {
  return (layers[0]?.fits ?? []).filter((f) =>
    layers.every((l) => l.fits.some((g) => fitKey(g) === fitKey(f))),
  );
}

function fitSummary(fits: readonly VllmExampleFit[], none: string): string {
  if (fits.length === 0) return none;
  return fits
    .map((f) => `${f.vllmVersion === "0.28" ? "vLLM <= 0.28" : "vLLM >= 0.29"} ${f.shapeName}`)
    .join(" or ");
}

/** The report of one ExampleConnector folder, keeping the readings `keep` allows. */
function exampleFolderReport(
  path: string,
  layers: readonly ExampleLayer[],
  keep: (fit: VllmExampleFit) => boolean = () => true,
): ForeignReport {
  const fits = folderFits(layers).filter(keep);
  const kept = new Set(fits.map(fitKey));
  const summary = fitSummary(fits, "no single vLLM layout (layer files disagree)");
  return {
    file: path,
    format: "vllm-example",
    verified: "each layer file's kv_cache size against its shape",
    lines: [
      `${path}: vLLM ExampleConnector folder, ${layers.length} layer files, ${fits[0]?.tokenCount ?? "?"} tokens; fits ${summary}`,
      ...(new Set(fits.map((f) => f.vllmVersion)).size > 1
        ? [
            "  both vLLM versions read this shape; the decoder's version decides (or inspect the storage path: its other prompt folders rule one out)",
          ]
        : []),
      ...layers.flatMap((l) =>
        // Each layer's readings, less the ones the folder (or its storage path) rules out.
        l.lines.filter((_, i) => {
          const fit = l.fits[i - 1];
          return i === 0 || fits.length === 0 || !fit || kept.has(fitKey(fit));
        }),
      ),
    ],
    details: { layers: layers.map((l) => l.details), fits },
  };
}

function sglangReport(path: string, file: SafetensorsFile): ForeignReport {
  const lines = [`${path}: SGLang token-major KV buffers (slot 0 is SGLang's padding slot)`];
  const tensors = [...file.tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape }));
  for (const t of tensors) {
    const [slots = 0, heads = 0, dim = 0] = t.shape;
    lines.push(
      `  ${t.name}: [${t.shape.join(", ")}] ${t.dtype}: ${slots - 1} tokens in slots 1..${slots - 1}, ${heads} heads × ${dim}`,
    );
  }
  return {
    file: path,
    format: "sglang",
    verified: "tensor sizes against their shapes",
    lines,
    details: { metadata: file.metadata, tensors },
  };
}

/** The vLLM paged pools a tensor shape fits. */
function poolFits(shape: readonly number[]): string[] {
  const fits: string[] = [];
  if (shape.length === 5 && shape[0] === 2)
    fits.push("vLLM <= 0.28 FlashAttention (2, num_blocks, block_size, num_kv_heads, head_size)");
  if (shape.length === 5 && shape[1] === 2)
    fits.push("vLLM <= 0.28 FlashInfer (num_blocks, 2, block_size, num_kv_heads, head_size)");
  if (shape.length === 4 && (shape[3] as number) % 2 === 0)
    fits.push(
      "vLLM >= 0.29 standardized view [num_blocks, num_kv_heads, block_size, C], C = K then V per head",
    );
  if (shape.length === 4 && shape[1] === 1)
    fits.push("vLLM >= 0.29 MLA view [num_blocks, 1, block_size, latent + rope]");
  if (shape.length === 3) fits.push("vLLM <= 0.28 MLA (num_blocks, block_size, latent + rope)");
  return fits;
}

function poolReport(path: string, file: SafetensorsFile): ForeignReport {
  const tensors = [...file.tensors].map(([name, t]) => ({
    name,
    dtype: t.dtype,
    shape: t.shape,
    fits: poolFits(t.shape),
  }));
  if (tensors.length === 0 || tensors.some((t) => t.fits.length === 0)) {
    const bad = tensors.find((t) => t.fits.length === 0);
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `${path} is a safetensors file without an OPAL descriptor${bad ? `, and tensor ${bad.name} [${bad.shape.join(", ")}] fits no vLLM pool, ExampleConnector, SGLang or LMCache layout` : " and holds no tensors"}`,
    );
  }
  return {
    file: path,
    format: "vllm-pool",
    verified: "tensor sizes against their shapes",
    lines: [
      `${path}: vLLM paged KV pool, ${tensors.length} tensors (the logical shape; the physical order is the decoder's KV cache layout)`,
      ...tensors.flatMap((t) => [
        `  ${t.name}: [${t.shape.join(", ")}] ${t.dtype}${t.dtype === "U8" ? " (fp8 cache)" : ""}`,
        ...t.fits.map((f) => `    fits ${f}`),
      ]),
    ],
    details: { tensors },
  };
}

async function lmcacheReport(path: string): Promise<ForeignReport> {
  const manifest = JSON.parse(await readFile(join(path, "manifest.json"), "utf8")) as {
    format?: string;
    chunkSizeTokens: number;
    descriptor: KvDescriptor;
    files: string[];
    memoryFormat?: LmcacheMemoryFormat;
  };
  const chunks = await Promise.all(
    manifest.files.map(async (f) => new Uint8Array(await readFile(join(path, f)))),
  );
  const d = manifest.descriptor;
  const cache = fromLmcacheChunks(chunks, d, {
    chunkSizeTokens: manifest.chunkSizeTokens,
    ...(manifest.memoryFormat ? { memoryFormat: manifest.memoryFormat } : {}),
  });
  return {
    file: path,
    format: "lmcache",
    verified: "every chunk's size against the manifest's descriptor",
    lines: [
      `${path}: LMCache chunks (${manifest.format ?? "KV_2LTD"}), ${chunks.length} of up to ${manifest.chunkSizeTokens} tokens`,
      `  ${d.numLayers} layers, ${d.dtype}, tokens [${d.tokenStart}, ${d.tokenStart + d.tokenCount}), KV ${cacheByteLength(d)} bytes, digest ${toHex(digestKvCache(cache))}`,
    ],
    details: { manifest, kvBytes: cacheByteLength(d), digest: toHex(digestKvCache(cache)) },
  };
}
