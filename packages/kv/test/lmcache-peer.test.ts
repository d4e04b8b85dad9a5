/**
 * Golden check of OPAL's LMCache chunks against LMCache's own memory-object layout, not against
 * OPAL's reader: lmcache-peer/lmcache_chunk_peer.py (torch 1.13, written from LMCache's
 * VLLMPagedMemGPUConnectorV2 at e23f2bbc1ad84d4d98fe17672a875db50b704ab9) builds the KV_2LTD
 * objects `[2, layers, tokens, heads * head_dim]` of each chunk from the reference K and V and
 * compares them with toLmcacheChunks' bytes; OPAL then reads LMCache's objects back.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fromLmcacheChunks, toLmcacheChunks } from "../src/index";
import { mhaDescriptor, randomCache } from "./fixtures";
import { PYTHON, pythonUnavailable } from "./python";

const skip = pythonUnavailable(["torch"]);
const PEER = join(__dirname, "lmcache-peer", "lmcache_chunk_peer.py");
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");

describe.skipIf(skip !== undefined)(
  "LMCache chunks against LMCache's KV_2LTD objects (torch peer)",
  () => {
    it("bf16/f16/f32, chunk sizes 256 and 16 with a short last chunk: the same bytes both ways", () => {
      const cases = (["bf16", "f16", "f32"] as const).flatMap((dtype, i) =>
        [256, 16].map((chunkSizeTokens) => {
          const d = mhaDescriptor({ dtype, tokenCount: 37 });
          const cache = randomCache(d, 11 + i);
          return { id: `${dtype} chunk ${chunkSizeTokens}`, d, cache, chunkSizeTokens };
        }),
      );
      const jobs = cases.map((c) => ({
        id: c.id,
        dtype: c.d.dtype,
        tokens: c.d.tokenCount,
        heads: c.d.headRange.count,
        headDim: 8,
        chunkSize: c.chunkSizeTokens,
        k: Array.from({ length: c.d.numLayers }, (_, l) => b64(c.cache.part(l, "k"))),
        v: Array.from({ length: c.d.numLayers }, (_, l) => b64(c.cache.part(l, "v"))),
        chunks: toLmcacheChunks(c.cache, { chunkSizeTokens: c.chunkSizeTokens }).map(b64),
      }));
      const run = spawnSync(PYTHON, [PEER], {
        input: JSON.stringify({ cases: jobs }),
        encoding: "utf8",
      });
      expect(run.stderr).toBe("");
      const results = run.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as { id: string; same: boolean; chunks: string[] });
      expect(results.map((r) => [r.id, r.same])).toEqual(cases.map((c) => [c.id, true]));
      for (const [i, c] of cases.entries()) {
        const chunks = (results[i] as { chunks: string[] }).chunks.map(
          (text) => new Uint8Array(Buffer.from(text, "base64")),
        );
        const back = fromLmcacheChunks(chunks, c.d, { chunkSizeTokens: c.chunkSizeTokens });
        for (let layer = 0; layer < c.d.numLayers; layer++)
          for (const part of ["k", "v"] as const)
            expect(
              Buffer.compare(back.part(layer, part), c.cache.part(layer, part)),
              `${c.id}`,
            ).toBe(0);
      }
    });
  },
);
