import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@opal/core";
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
  type KvCache,
  KvFormatError,
  readVllmExampleFolder,
  toFloat32View,
  vllmExampleFolderName,
  vllmExampleTokenCount,
  writeVllmExampleFolder,
} from "./index";

describe("vLLM ExampleConnector handoff", () => {
  const dir = mkdtempSync(join(tmpdir(), "opal-kv-example-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("rejects a block size that is not an integer >= 1 and a token count that is not an integer >= 0", () => {
    for (const blockSize of [0, -16, 2.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => vllmExampleTokenCount(40, blockSize)).toThrow(
        expect.objectContaining({
          code: Code.INVALID_ARGUMENT,
          reason: "OUT_OF_RANGE",
          message: `[invalid_argument] blockSizeTokens ${blockSize}, expected an integer >= 1`,
        }),
      );
    }
    for (const count of [-1, 1.5, Number.NaN]) {
      expect(() => vllmExampleTokenCount(count, 16)).toThrow(
        `[invalid_argument] promptTokenCount ${count}, expected an integer >= 0`,
      );
    }
  });

  it("truncates like align_to_block_size and names folders by md5 of int64 token bytes", () => {
    expect([0, 1, 16, 17, 18, 33, 40].map((n) => vllmExampleTokenCount(n, 16))).toEqual([
      0, 0, 0, 16, 16, 32, 32,
    ]);
    // Decode side: the prompt plus one generated token looks up the same count.
    expect(vllmExampleTokenCount(17 + 1 - 1, 16)).toBe(vllmExampleTokenCount(17, 16));
    expect(vllmExampleTokenCount(40, 1)).toBe(39);
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

  it("a failed folder write leaves nothing under the prompt's name (vLLM reads existence as done)", async () => {
    const storagePath = mkdtempSync(join(dir, "failed-"));
    const tokenIds = Array.from({ length: 16 }, (_, i) => i);
    const name = vllmExampleFolderName(tokenIds);
    // Fails at layer 0 (scales cannot be stored), and at layer 1 after layer 0 was written.
    const scaled = randomCache(
      mhaDescriptor({ tokenCount: 16, dtype: "int8", scaleScheme: "per_tensor" }),
    );
    await expect(writeVllmExampleFolder(scaled, { storagePath, tokenIds })).rejects.toMatchObject({
      reason: "UNSUPPORTED_LAYOUT",
    });
    const cache = randomCache(mhaDescriptor({ tokenCount: 16 }));
    const brokenAtLayer1: KvCache = {
      descriptor: cache.descriptor,
      layer: (l) => cache.layer(l),
      part: (l, p) => {
        if (l === 1) throw new Error("source failed at layer 1");
        return cache.part(l, p);
      },
    };
    await expect(writeVllmExampleFolder(brokenAtLayer1, { storagePath, tokenIds })).rejects.toThrow(
      /layer 1/,
    );
    expect(readdirSync(storagePath)).toEqual([]);
    // An existing folder of the same prompt is refused unless replace, which replaces it whole.
    await writeVllmExampleFolder(randomCache(mhaDescriptor({ tokenCount: 16 }), 2), {
      storagePath,
      tokenIds,
    });
    await expect(writeVllmExampleFolder(cache, { storagePath, tokenIds })).rejects.toMatchObject({
      code: Code.ALREADY_EXISTS,
    });
    expect(readdirSync(storagePath)).toEqual([name]);
    await writeVllmExampleFolder(cache, { storagePath, tokenIds, replace: true });
    expect(readdirSync(storagePath)).toEqual([name]);
    const back = await readVllmExampleFolder(cache.descriptor, { storagePath, tokenIds });
    expect(sameCache(back, cache)).toBe(true);
  });

  it("keeps every file inside the folder and rejects token ids that are not integers", async () => {
    const storagePath = mkdtempSync(join(dir, "names-"));
    const cache = randomCache(mhaDescriptor({ tokenCount: 16 }));
    const tokenIds = Array.from({ length: 16 }, (_, i) => i);
    for (const layerNames of [
      ["../escaped", "b", "c"],
      ["a", "..", "c"],
      ["a", "b"],
      ["a", "b", "a"],
    ]) {
      await expect(
        writeVllmExampleFolder(cache, { storagePath, tokenIds, layerNames }),
      ).rejects.toBeInstanceOf(KvFormatError);
      await expect(
        readVllmExampleFolder(cache.descriptor, { storagePath, tokenIds, layerNames }),
      ).rejects.toBeInstanceOf(KvFormatError);
    }
    expect(readdirSync(dir).some((f) => f.startsWith("escaped"))).toBe(false);
    expect(readdirSync(storagePath)).toEqual([]);
    expect(() => vllmExampleFolderName([1, 2.5])).toThrow(/token id 2.5 at index 1/);
  });
});
