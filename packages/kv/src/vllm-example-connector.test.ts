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
  fromFloat32,
  type KvCache,
  KvFormatError,
  readVllmExampleFolder,
  toFloat32View,
  vllmExampleFolderName,
  vllmExampleFolders,
  vllmExampleTokenCount,
  writeVllmExampleFolder,
  writeVllmExampleHandoff,
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

  it("writes vLLM >= 0.29's [tokens, heads, K||V] by default and <= 0.28's [2, tokens, heads*dim] on request", () => {
    const d = mhaDescriptor({ layout: "hnd", tokenCount: 32 });
    const cache = coordinateCache(d);
    const nhd = coordinateCache({ ...d, layout: "nhd" });
    const k = toFloat32View(nhd.part(1, "k"));
    const v = toFloat32View(nhd.part(1, "v"));
    const now = decodeSafetensors(encodeVllmExampleLayer(cache, 1)).tensors.get("kv_cache")!;
    expect(now.dtype).toBe("F32");
    expect(now.shape).toEqual([32, 4, 16]);
    const nowValues = toFloat32View(now.data.slice());
    // token 5, head 2, element 1: K at [5, 2, 1], V at [5, 2, 8 + 1].
    expect(nowValues[(5 * 4 + 2) * 16 + 1]).toBe(k[5 * 32 + 2 * 8 + 1]);
    expect(nowValues[(5 * 4 + 2) * 16 + 8 + 1]).toBe(v[5 * 32 + 2 * 8 + 1]);
    const old = decodeSafetensors(
      encodeVllmExampleLayer(cache, 1, { vllmVersion: "0.28" }),
    ).tensors.get("kv_cache")!;
    expect(old.shape).toEqual([2, 32, 32]);
    expect(Buffer.compare(old.data.subarray(0, 32 * 32 * 4), nhd.part(1, "k"))).toBe(0);
    expect(toFloat32View(old.data.slice())[32 * 32 + 5 * 32 + 2 * 8 + 1]).toBe(
      v[5 * 32 + 2 * 8 + 1],
    );
    for (const vllmVersion of ["0.28", "0.29"] as const) {
      const bytes = encodeVllmExampleLayer(cache, 1, { vllmVersion });
      const back = decodeVllmExampleLayer(bytes, { ...d, layout: "nhd" });
      expect(Buffer.compare(back.k!, nhd.part(1, "k"))).toBe(0);
      expect(Buffer.compare(back.v!, nhd.part(1, "v"))).toBe(0);
      const other = vllmVersion === "0.28" ? "0.29" : "0.28";
      expect(() => decodeVllmExampleLayer(bytes, d, { vllmVersion: other })).toThrow(/SHAPE|shape/);
    }
  });

  /** What CUDA's satfinite conversion stores: saturated RNE, every NaN (either sign) as 0x7F. */
  const cudaFp8 = (values: Float32Array, scale: number) => {
    const quotients = values.map((x) => x / scale);
    const out = fromFloat32(quotients, "fp8_e4m3fn", { saturate: true });
    return out.map((code, i) => (Number.isNaN(quotients[i]) ? 0x7f : code));
  };

  it("fp8: quantises with the decoder's static per-layer scales and writes U8; reads U8 back", () => {
    const d = mhaDescriptor({ dtype: "f32", tokenCount: 16 });
    const cache = randomCache(d, 3);
    const fp8 = { dtype: "fp8_e4m3fn" as const, kScale: [1, 0.5, 2], vScale: 0.25 };
    const file = decodeSafetensors(encodeVllmExampleLayer(cache, 1, { fp8 }));
    const t = file.tensors.get("kv_cache")!;
    expect(t.dtype).toBe("U8");
    expect(t.shape).toEqual([16, 4, 16]);
    const k = toFloat32View(cache.part(1, "k"));
    const v = toFloat32View(cache.part(1, "v"));
    const q = decodeVllmExampleLayer(encodeVllmExampleLayer(cache, 1, { fp8 }), {
      ...d,
      dtype: "fp8_e4m3fn",
    });
    expect(Buffer.from(q.k!)).toEqual(Buffer.from(cudaFp8(k, 0.5)));
    expect(Buffer.from(q.v!)).toEqual(Buffer.from(cudaFp8(v, 0.25)));
    expect(() => encodeVllmExampleLayer(cache, 1, { fp8: { ...fp8, kScale: [1] } })).toThrow(
      /kScale for layer 1/,
    );
    const already = randomCache(mhaDescriptor({ dtype: "fp8_e4m3fn", tokenCount: 16 }));
    expect(
      decodeSafetensors(encodeVllmExampleLayer(already, 0)).tensors.get("kv_cache")!.dtype,
    ).toBe("U8");
    expect(() => encodeVllmExampleLayer(already, 0, { fp8 })).toThrow(/already fp8_e4m3fn/);
  });

  it("writes the folder vLLM checks and the folder it loads (they differ when n is a multiple of the block)", async () => {
    const storagePath = mkdtempSync(join(dir, "handoff-"));
    const d = mhaDescriptor({ tokenCount: 32 });
    const cache = randomCache(d, 9);
    const prompt = Array.from({ length: 32 }, (_, i) => 500 + i);
    const out = await writeVllmExampleHandoff(cache, {
      storagePath,
      promptTokenIds: prompt,
      blockSizeTokens: 16,
    });
    expect(out.checkTokens).toBe(16);
    expect(out.loadTokens).toBe(32);
    expect(out.checkFolder).toBe(join(storagePath, vllmExampleFolderName(prompt.slice(0, 16))));
    expect(out.loadFolder).toBe(join(storagePath, vllmExampleFolderName(prompt)));
    expect(readdirSync(storagePath).sort()).toEqual([out.checkName, out.loadName].sort());
    const back = await readVllmExampleFolder(d, { storagePath, tokenIds: prompt });
    expect(sameCache(back, cache)).toBe(true);
    const odd = vllmExampleFolders(prompt.slice(0, 20), 16);
    expect(odd.checkName).toBe(odd.loadName);
    expect(odd.loadTokens).toBe(16);
    expect(() => vllmExampleFolders(prompt.slice(0, 16), 16)).toThrow(/stores no tokens/);
  });

  it("refuses tensor parallelism > 1 for non-MLA caches, saying why", async () => {
    const storagePath = mkdtempSync(join(dir, "tp-"));
    const tokenIds = Array.from({ length: 16 }, (_, i) => i);
    await expect(
      writeVllmExampleFolder(randomCache(mhaDescriptor({ tokenCount: 16 })), {
        storagePath,
        tokenIds,
        tensorParallelSize: 2,
      }),
    ).rejects.toThrow(/no TP rank.*only MLA/);
    await writeVllmExampleFolder(randomCache(mlaDescriptor({ tokenCount: 16 })), {
      storagePath,
      tokenIds,
      tensorParallelSize: 2,
    });
    expect(readdirSync(storagePath)).toEqual([vllmExampleFolderName(tokenIds)]);
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
    const ids17 = Array.from({ length: 17 }, (_, i) => i);
    const bytes = encodeVllmExampleLayer(randomCache(d), 0);
    expect(() => decodeVllmExampleLayer(bytes, { ...d, tokenCount: 17 })).toThrow(
      /shape \[16,4,16\], expected \[17,4,16\] \(vLLM >= 0.29\) or \[2,17,32\] \(vLLM <= 0.28\)/,
    );
    expect(() => decodeVllmExampleLayer(bytes, { ...d, dtype: "f16" })).toThrow(/dtype F32/);
    await expect(
      writeVllmExampleFolder(randomCache(d), { storagePath: dir, tokenIds: ids17 }),
    ).rejects.toThrow(/expected \[0, 17\)/);
    expect(existsSync(join(dir, vllmExampleFolderName(ids17)))).toBe(false);
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
