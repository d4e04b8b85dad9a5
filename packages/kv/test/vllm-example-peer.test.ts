import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  type KvCache,
  type KvDescriptor,
  type KvDtype,
  readVllmExampleFolder,
  type VllmExampleVersion,
  vllmExampleFolderName,
  vllmExampleFolders,
  vllmLayerName,
  writeVllmExampleHandoff,
} from "../src/index";
import { mhaDescriptor, randomCache } from "./fixtures";
import { PYTHON, pythonUnavailable } from "./python";

/**
 * Golden checks against vLLM's own ExampleConnector steps (vllm-peer/vllm_example_peer.py, written
 * from vLLM's source at the commits it cites, run with Debian's python3-torch): OPAL's folders
 * loaded by vLLM's load path into vLLM-shaped pools, and folders saved by vLLM's store path read by
 * OPAL, both equal to the reference K and V byte for byte.
 */
const skip = pythonUnavailable(["torch"]);
const PEER = join(__dirname, "vllm-peer", "vllm_example_peer.py");
const BLOCK = 16;
// 0.7 and 0.3 are not float32 numbers: vLLM divides by the float32 scale, so must OPAL.
const SCALES = { kScale: [0.7, 2], vScale: 0.3 };

interface Case {
  readonly id: string;
  readonly direction: "load" | "save";
  readonly version: VllmExampleVersion;
  /** OPAL dtype of the file contents; fp8 rows are quantised from a bf16 cache. */
  readonly dtype: "bf16" | "f16" | "fp8_e4m3fn" | "fp8_e5m2";
  readonly mla: boolean;
  readonly promptTokens: number;
  readonly layout?: string;
  readonly mmHashes?: readonly string[];
}

const cases: Case[] = [];
for (const version of ["0.28", "0.29"] as const)
  for (const dtype of ["bf16", "f16", "fp8_e4m3fn", "fp8_e5m2"] as const)
    for (const mla of [false, true])
      for (const direction of ["load", "save"] as const)
        cases.push({
          id: `${direction} ${version} ${dtype} ${mla ? "mla" : "gqa"}`,
          direction,
          version,
          dtype,
          mla,
          // 32 = 2 blocks: vLLM checks the 16-token folder and loads the 32-token one.
          promptTokens: dtype === "f16" ? 37 : 32,
        });
for (const layout of ["LBHNC", "BHLNC", "BLNHC"])
  for (const direction of ["load", "save"] as const)
    cases.push({
      id: `${direction} 0.29 bf16 gqa ${layout}`,
      direction,
      version: "0.29",
      dtype: "bf16",
      mla: false,
      promptTokens: 32,
      layout,
    });

// Multimodal hashes are part of the folder name (md5 of the token bytes, then "-".join(hashes)).
for (const direction of ["load", "save"] as const)
  cases.push({
    id: `${direction} 0.29 bf16 gqa with multimodal hashes`,
    direction,
    version: "0.29",
    dtype: "bf16",
    mla: false,
    promptTokens: 48,
    mmHashes: ["7f3a-image", "b2c1-audio"],
  });

function descriptorOf(c: Case, tokenCount: number, dtype: KvDtype): KvDescriptor {
  return mhaDescriptor({
    numLayers: 2,
    attention: c.mla
      ? { kind: "mla", latentDim: 512, ropeDim: 64 }
      : { kind: "mha", numKvHeads: 4, headDim: 16 },
    headRange: { start: 0, count: c.mla ? 1 : 4 },
    dtype,
    tokenCount,
    blockSizeTokens: BLOCK,
  });
}

/**
 * The reference rows of one layer as raw bytes: the cache's own parts. For fp8 loads these are the
 * model's bf16 K and V; the peer quantises them itself as vLLM's cache write does (it is given
 * the static scales), so OPAL's quantiser is checked, not trusted.
 */
function referenceParts(c: Case, cache: KvCache, layer: number): Record<string, Uint8Array> {
  const parts = c.mla ? (["latent"] as const) : (["k", "v"] as const);
  return Object.fromEntries(parts.map((part) => [part, cache.part(layer, part)]));
}

/** The static scales per layer for the peer (MLA's latent uses k_scale). */
const PEER_SCALES = {
  kScale: SCALES.kScale,
  vScale: SCALES.kScale.map(() => SCALES.vScale),
};

describe.skipIf(skip)(
  "vLLM ExampleConnector folders against vLLM's own save and load steps",
  () => {
    const root = mkdtempSync(join(tmpdir(), "opal-vllm-peer-"));
    afterAll(() => rmSync(root, { recursive: true, force: true }));

    it(`${cases.length} cases: both versions, bf16/f16/fp8 (e4m3, e5m2) as U8, GQA and MLA, 0.29 pool layouts`, async () => {
      const jobs = [];
      const caches = new Map<string, KvCache>();
      for (const [i, c] of cases.entries()) {
        const dir = join(root, String(i));
        const storage = join(dir, "storage");
        const reference = join(dir, "reference");
        mkdirSync(reference, { recursive: true });
        const prompt = Array.from({ length: c.promptTokens }, (_, t) => 100 + i * 1000 + t * 3);
        const fp8 = c.dtype === "fp8_e4m3fn" || c.dtype === "fp8_e5m2";
        const sourceDtype = c.direction === "load" && fp8 ? "bf16" : c.dtype;
        const cache = randomCache(descriptorOf(c, c.promptTokens, sourceDtype), 7 + i);
        caches.set(c.id, cache);
        for (let layer = 0; layer < 2; layer++)
          for (const [part, bytes] of Object.entries(referenceParts(c, cache, layer)))
            writeFileSync(join(reference, `${layer}.${part}.bin`), bytes);
        if (c.direction === "load") {
          await writeVllmExampleHandoff(cache, {
            storagePath: storage,
            promptTokenIds: prompt,
            vllmVersion: c.version,
            ...(c.mmHashes ? { mmHashes: c.mmHashes } : {}),
            ...(fp8 ? { fp8: { dtype: c.dtype as "fp8_e4m3fn" | "fp8_e5m2", ...SCALES } } : {}),
          });
        }
        const blocks = Math.ceil((c.promptTokens + 1) / BLOCK);
        jobs.push({
          id: c.id,
          direction: c.direction,
          version: c.version,
          dtype: { bf16: "BF16", f16: "F16", fp8_e4m3fn: "U8", fp8_e5m2: "U8" }[c.dtype],
          mla: c.mla,
          heads: c.mla ? 1 : 4,
          width: c.mla ? 576 : 16,
          blockSize: BLOCK,
          numBlocks: blocks + 5,
          // Scattered, descending blocks: a contiguous copy would not pass.
          blockIds: Array.from({ length: blocks }, (_, b) => blocks + 4 - 2 * b),
          layerNames: [vllmLayerName(0), vllmLayerName(1)],
          promptTokenIds: prompt,
          generatedTokenId: 7,
          storage,
          reference,
          ...(c.layout ? { layout: c.layout } : {}),
          ...(c.mmHashes ? { mmHashes: c.mmHashes } : {}),
          ...(c.direction === "load" && fp8
            ? { fp8: { ...PEER_SCALES, format: c.dtype === "fp8_e5m2" ? "e5m2" : "e4m3" } }
            : {}),
        });
      }
      const run = spawnSync(PYTHON, [PEER], {
        input: JSON.stringify(jobs),
        encoding: "utf8",
        timeout: 60_000,
      });
      expect(run.stderr).toBe("");
      const results = JSON.parse(run.stdout) as {
        id: string;
        ok: boolean;
        detail?: string;
        checkFolder?: string;
        loadFolder?: string;
        folder?: string;
        tokens?: number;
      }[];
      expect(results.filter((r) => !r.ok)).toEqual([]);
      expect(results.map((r) => r.id)).toEqual(cases.map((c) => c.id));

      for (const [i, c] of cases.entries()) {
        const r = results[i]!;
        const prompt = jobs[i]!.promptTokenIds;
        const storage = jobs[i]!.storage;
        const mm = c.mmHashes ? { mmHashes: c.mmHashes } : {};
        const names = vllmExampleFolders(prompt, BLOCK, mm);
        if (c.direction === "load") {
          // vLLM checked one folder and loaded the other; both are the ones OPAL wrote.
          expect(r.checkFolder).toBe(join(storage, names.checkName));
          expect(r.loadFolder).toBe(join(storage, names.loadName));
          if (c.promptTokens % BLOCK === 0) expect(names.checkName).not.toBe(names.loadName);
          continue;
        }
        // vLLM's store path saved the first align_to_block_size(n) tokens; OPAL reads them back.
        expect(r.tokens).toBe(names.checkTokens);
        expect(r.folder).toBe(
          join(storage, vllmExampleFolderName(prompt.slice(0, names.checkTokens), mm)),
        );
        const d = descriptorOf(c, names.checkTokens, c.dtype);
        const back = await readVllmExampleFolder(d, {
          storagePath: storage,
          tokenIds: prompt.slice(0, names.checkTokens),
          ...mm,
        });
        const cache = caches.get(c.id)!;
        for (let layer = 0; layer < 2; layer++)
          for (const [part, bytes] of Object.entries(referenceParts(c, cache, layer))) {
            const got = back.part(layer, part as "k");
            expect(Buffer.compare(got, bytes.subarray(0, got.byteLength)), `${c.id} ${part}`).toBe(
              0,
            );
          }
      }
    }, 90_000);
  },
);
