import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  coordinateCache,
  mhaDescriptor,
  mlaDescriptor,
  randomCache,
  sameCache,
} from "../test/fixtures";
import {
  decodeSafetensors,
  decodeVllmExampleLayer,
  encodeVllmExampleLayer,
  readVllmExampleFolder,
  toFloat32View,
  vllmExampleFolderName,
  vllmExampleTokenCount,
  writeVllmExampleFolder,
} from "./index";

describe("vLLM ExampleConnector handoff", () => {
  const dir = mkdtempSync(join(tmpdir(), "opal-kv-example-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("truncates like align_to_block_size and names folders by md5 of int64 token bytes", () => {
    expect([0, 1, 16, 17, 18, 33, 40].map((n) => vllmExampleTokenCount(n, 16))).toEqual([
      0, 0, 0, 16, 16, 32, 32,
    ]);
    // Decode side: the prompt plus one generated token looks up the same count.
    expect(vllmExampleTokenCount(17 + 1 - 1, 16)).toBe(vllmExampleTokenCount(17, 16));
    const ids = [1, 2, 300];
    const bytes = Buffer.alloc(24);
    for (const [i, id] of ids.entries()) bytes.writeBigInt64LE(BigInt(id), i * 8);
    expect(vllmExampleFolderName(ids)).toBe(createHash("md5").update(bytes).digest("hex"));
    expect(vllmExampleFolderName(ids, { mmHashes: ["a", "b"] })).toBe(
      createHash("md5")
        .update(Buffer.concat([bytes, Buffer.from("a-b")]))
        .digest("hex"),
    );
  });

  it("writes [2, tokens, heads*dim] kv_cache tensors token-major, from nhd and hnd caches", () => {
    const d = mhaDescriptor({ layout: "hnd", tokenCount: 32 });
    const cache = coordinateCache(d);
    const file = decodeSafetensors(encodeVllmExampleLayer(cache, 1));
    const t = file.tensors.get("kv_cache")!;
    expect(t.dtype).toBe("F32");
    expect(t.shape).toEqual([2, 32, 32]);
    const values = toFloat32View(t.data.slice());
    const nhd = coordinateCache({ ...d, layout: "nhd" });
    expect(Buffer.compare(t.data.subarray(0, 32 * 32 * 4), nhd.part(1, "k"))).toBe(0);
    expect(values[32 * 32 + 5 * 32 + 2 * 8 + 1]).toBe(
      toFloat32View(nhd.part(1, "v"))[5 * 32 + 2 * 8 + 1],
    );
    expect(sameCache(cache, cache)).toBe(true);
  });

  for (const [name, d] of [
    ["mha bf16", mhaDescriptor({ dtype: "bf16", tokenCount: 32 })],
    ["mha hnd f16", mhaDescriptor({ dtype: "f16", tokenCount: 16, layout: "hnd" })],
    ["mla bf16", mlaDescriptor({ dtype: "bf16", tokenCount: 48 })],
  ] as const) {
    it(`${name}: folder write -> read is the identity`, async () => {
      const cache = randomCache(d, 5);
      const tokenIds = Array.from({ length: d.tokenCount }, (_, i) => 1000 + i);
      const folder = await writeVllmExampleFolder(cache, { storagePath: dir, tokenIds });
      expect(folder).toBe(join(dir, vllmExampleFolderName(tokenIds)));
      expect(readdirSync(folder).sort()).toEqual(
        [0, 1, 2].map((l) => `model.layers.${l}.self_attn.attn.safetensors`).sort(),
      );
      const back = await readVllmExampleFolder(d, { storagePath: dir, tokenIds });
      expect(sameCache(back, cache)).toBe(true);
      if (d.attention.kind === "mla") {
        const t = decodeSafetensors(encodeVllmExampleLayer(cache, 0)).tensors.get("kv_cache")!;
        expect(t.shape).toEqual([48, 20]);
      }
    });
  }

  it("rejects mismatching files and caches", async () => {
    const d = mhaDescriptor({ tokenCount: 16 });
    const bytes = encodeVllmExampleLayer(randomCache(d), 0);
    expect(() => decodeVllmExampleLayer(bytes, { ...d, tokenCount: 17 })).toThrow(
      /shape \[2,16,32\], expected \[2,17,32\]/,
    );
    expect(() => decodeVllmExampleLayer(bytes, { ...d, dtype: "f16" })).toThrow(/dtype F32/);
    await expect(
      writeVllmExampleFolder(randomCache(d), { storagePath: dir, tokenIds: [1, 2] }),
    ).rejects.toThrow(/expected \[0, 2\)/);
    expect(existsSync(join(dir, vllmExampleFolderName([1, 2])))).toBe(false);
  });
});
