/**
 * Golden check of OPAL's SGLang buffers against SGLang's own steps, not against OPAL's reader:
 * packages/kv/test/sglang-peer/sglang_pool_peer.py (torch 1.13, written from SGLang's
 * memory_pool.py @ 000ccdba94d4ed75d4fab7b1dac5f8ebcaaee7e8) allocates each layer's buffers as
 * SGLang's token-to-KV pools do, reads what OPAL's sink wrote through SGLang's indexing
 * (`k_buffer[layer][loc]`), and writes the reference K and V through set_kv_buffer's index-put for
 * OPAL to read. GQA and MLA, bf16, f16 and fp8 (SGLang's uint8 store dtype), one Python process.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { PrefillStats } from "@opal/driver";
import { fromSglangLayer, type KvCache, type KvDtype } from "@opal/kv";
import { describe, expect, it } from "vitest";
import { mhaDescriptor, mlaDescriptor, randomCache } from "../../kv/test/fixtures";
import { PYTHON, pythonUnavailable } from "../../kv/test/python";
import { createSglangSink } from "../src/sinks/sglang-sink";

const PEER = fileURLToPath(
  new URL("../../kv/test/sglang-peer/sglang_pool_peer.py", import.meta.url),
);
const skip = pythonUnavailable(["torch"]);
const stats = {} as PrefillStats;
const SIZE = 60; // SGLang's pool size in tokens
const PAGE = 4; // page_size: the buffers hold SIZE + PAGE slots
const LAYER = 1;
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
const bytesOf = (text: string) => new Uint8Array(Buffer.from(text, "base64"));

interface Case {
  readonly id: string;
  readonly cache: KvCache;
  readonly loc: Int32Array;
  readonly peer: Record<string, unknown>;
}

async function buildCase(mla: boolean, dtype: KvDtype, seed: number): Promise<Case> {
  const d = (mla ? mlaDescriptor : mhaDescriptor)({ dtype, tokenCount: 37 });
  const cache = randomCache(d, seed);
  const headNum = mla ? 1 : d.headRange.count;
  const headDim = d.attention.kind === "mla" ? d.attention.latentDim + d.attention.ropeDim : 8;
  const bytes = (SIZE + PAGE) * headNum * headDim * (dtype === "fp8_e4m3fn" ? 1 : 2);
  const make = () => Array.from({ length: d.numLayers }, () => new Uint8Array(bytes).fill(0xee));
  const kBuffers = make();
  const vBuffers = mla ? undefined : make();
  // Scattered slots, never the padding slot 0, as SGLang's allocator hands them out.
  const loc = Int32Array.from({ length: d.tokenCount }, (_, i) => 1 + ((i * 7) % SIZE));
  const sink = createSglangSink({
    kBuffers,
    vBuffers,
    slots: loc,
    dtype,
    headNum,
    headDim,
    attention: d.attention.kind,
  });
  await sink.open(d);
  for (let layer = 0; layer < d.numLayers; layer++) await sink.writeLayer(cache.layer(layer));
  await sink.commit(stats);
  const parts = mla ? (["latent"] as const) : (["k", "v"] as const);
  const id = `${mla ? "mla" : "gqa"} ${dtype}`;
  const pool: Record<string, string> = { k: b64(kBuffers[LAYER] as Uint8Array) };
  if (vBuffers) pool.v = b64(vBuffers[LAYER] as Uint8Array);
  const reference: Record<string, string> = {};
  for (const part of parts)
    reference[part === "latent" ? "k" : part] = b64(cache.part(LAYER, part));
  return {
    id,
    cache,
    loc,
    peer: {
      id,
      dtype,
      mla,
      size: SIZE,
      pageSize: PAGE,
      headNum,
      headDim,
      loc: [...loc],
      pool,
      reference,
    },
  };
}

describe.skipIf(skip !== undefined)(
  "SGLang buffers against SGLang's own indexing (torch peer)",
  () => {
    it("GQA and MLA, bf16/f16/fp8: OPAL's slots read right through SGLang, SGLang's writes read right through OPAL", async () => {
      const cases: Case[] = [];
      for (const mla of [false, true])
        for (const dtype of ["bf16", "f16", "fp8_e4m3fn"] as const)
          cases.push(await buildCase(mla, dtype, cases.length + 3));
      const run = spawnSync(PYTHON, [PEER], {
        input: JSON.stringify({ cases: cases.map((c) => c.peer) }),
        encoding: "utf8",
        timeout: 60_000,
      });
      expect(run.stderr).toBe("");
      const results = run.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as Record<string, string>);
      expect(results.map((r) => r.id)).toEqual(cases.map((c) => c.id));
      for (const [i, c] of cases.entries()) {
        const r = results[i] as Record<string, string>;
        const d = c.cache.descriptor;
        const mla = d.attention.kind === "mla";
        const k = c.cache.part(LAYER, mla ? "latent" : "k");
        // 1. SGLang's k_buffer[layer][loc] is the reference, token-major [T, H, D].
        expect(Buffer.compare(bytesOf(r.read_k as string), k), `${c.id} K read by SGLang`).toBe(0);
        if (!mla)
          expect(
            Buffer.compare(bytesOf(r.read_v as string), c.cache.part(LAYER, "v")),
            `${c.id} V read by SGLang`,
          ).toBe(0);
        // 2. What SGLang's index-put wrote reads back through OPAL as the reference.
        const back = fromSglangLayer(
          {
            kBuffer: bytesOf(r.written_k as string),
            ...(mla ? {} : { vBuffer: bytesOf(r.written_v as string) }),
          },
          { descriptor: d, slots: c.loc },
        );
        expect(
          Buffer.compare(back[mla ? "latent" : "k"] as Uint8Array, k),
          `${c.id} K read by OPAL`,
        ).toBe(0);
        if (!mla)
          expect(
            Buffer.compare(back.v as Uint8Array, c.cache.part(LAYER, "v")),
            `${c.id} V read by OPAL`,
          ).toBe(0);
      }
    }, 60_000);
  },
);
