import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, Reason } from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import {
  readVllmExampleFolder,
  toKvLayout,
  vllmExampleFolderName,
  vllmLayerName,
  writeVllmExampleFolder,
} from "@opal/kv";
import { expectOpalError } from "@opal/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  coordinateCache,
  mhaDescriptor,
  mlaDescriptor,
  randomCache,
  sameCache,
} from "../../../kv/test/fixtures";
import { createVllmExampleSink } from "./vllm-example-sink";

const stats = {} as PrefillStats;
const prompt = Array.from({ length: 37 }, (_, i) => 1000 + i * 7);
let dir = "";
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "opal-vllm-example-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("createVllmExampleSink", () => {
  for (const d of [mhaDescriptor({ layout: "hnd", dtype: "f32" }), mlaDescriptor()]) {
    it(`${d.attention.kind} ${d.layout}: writes the folder vLLM loads, byte-identical to writeVllmExampleFolder`, async () => {
      const cache = coordinateCache(d);
      const storage = join(dir, "storage");
      const sink = createVllmExampleSink({ directory: storage, promptTokenIds: prompt });
      await sink.open(d);
      for (let layer = 0; layer < d.numLayers; layer++) {
        await sink.writeLayer(cache.layer(layer));
        expect((await readdir(storage)).every((name) => name.includes(".partial-"))).toBe(true);
      }
      const receipt = await sink.commit(stats);
      // vLLM stores (37 - 1) // 16 * 16 = 32 tokens, in a folder named by their md5.
      const ids = prompt.slice(0, 32);
      const folder = join(storage, vllmExampleFolderName(ids));
      expect(receipt).toEqual({ folder, tokens: 32, loadFolder: folder, loadTokens: 32 });
      expect(await readdir(storage)).toEqual([vllmExampleFolderName(ids)]);
      const stored = { ...d, tokenCount: 32 };
      const expected = coordinateCache(stored);
      const back = await readVllmExampleFolder(stored, { storagePath: storage, tokenIds: ids });
      expect(sameCache(back, expected)).toBe(true);
      const reference = join(dir, "reference");
      await writeVllmExampleFolder(toKvLayout(expected, "nhd"), {
        storagePath: reference,
        tokenIds: ids,
      });
      for (let layer = 0; layer < d.numLayers; layer++) {
        const name = `${vllmExampleFolderName(ids)}/${vllmLayerName(layer)}.safetensors`;
        const ours = await readFile(join(storage, name));
        expect(Buffer.compare(ours, await readFile(join(reference, name)))).toBe(0);
      }
    });
  }

  it("n a multiple of the block: writes the folder vLLM checks (n - block tokens) and the one it loads (n)", async () => {
    const d = mhaDescriptor({ dtype: "f32", tokenCount: 32 });
    const cache = randomCache(d, 4);
    const ids = prompt.slice(0, 32);
    const fp8 = { dtype: "fp8_e4m3fn" as const, kScale: 0.5, vScale: [1, 2, 4] };
    for (const vllmVersion of ["0.28", "0.29"] as const) {
      const storage = join(dir, vllmVersion);
      const sink = createVllmExampleSink({
        directory: storage,
        promptTokenIds: ids,
        vllmVersion,
        fp8,
      });
      await sink.open(d);
      for (let layer = 0; layer < d.numLayers; layer++) await sink.writeLayer(cache.layer(layer));
      const receipt = await sink.commit(stats);
      const check = vllmExampleFolderName(ids.slice(0, 16));
      const load = vllmExampleFolderName(ids);
      expect(receipt).toEqual({
        folder: join(storage, check),
        tokens: 16,
        loadFolder: join(storage, load),
        loadTokens: 32,
      });
      expect((await readdir(storage)).sort()).toEqual([check, load].sort());
      const reference = join(dir, `reference-${vllmVersion}`);
      for (const tokenIds of [ids, ids.slice(0, 16)]) {
        await writeVllmExampleFolder(cache, { storagePath: reference, tokenIds, vllmVersion, fp8 });
        const name = vllmExampleFolderName(tokenIds);
        for (let layer = 0; layer < d.numLayers; layer++) {
          const file = `${name}/${vllmLayerName(layer)}.safetensors`;
          const ours = await readFile(join(storage, file));
          expect(Buffer.compare(ours, await readFile(join(reference, file)))).toBe(0);
        }
      }
    }
  });

  it("refuses an existing non-empty folder of the same prompt unless replace (issue #18)", async () => {
    const cache = randomCache(mhaDescriptor({ dtype: "bf16", numLayers: 1 }));
    const folder = join(dir, vllmExampleFolderName(prompt.slice(0, 32)));
    await mkdir(folder);
    await writeFile(join(folder, "operator.txt"), "not OPAL's");
    const options = { directory: dir, promptTokenIds: prompt, layerNames: ["attn0"] };
    await expectOpalError(
      Promise.resolve(createVllmExampleSink(options).open(cache.descriptor)),
      Code.ALREADY_EXISTS,
    );
    // Created between open and commit: the commit's rename refuses it atomically.
    await rm(folder, { recursive: true });
    const sink = createVllmExampleSink(options);
    await sink.open(cache.descriptor);
    await sink.writeLayer(cache.layer(0));
    await mkdir(folder);
    await writeFile(join(folder, "operator.txt"), "not OPAL's");
    await expectOpalError(Promise.resolve(sink.commit(stats)), Code.ALREADY_EXISTS);
    expect(await readdir(dir)).toEqual([vllmExampleFolderName(prompt.slice(0, 32))]);
    expect(await readFile(join(folder, "operator.txt"), "utf8")).toBe("not OPAL's");
  });

  it("replaces an existing folder of the same prompt on commit with replace", async () => {
    const cache = randomCache(mhaDescriptor({ dtype: "bf16", numLayers: 1 }));
    const folder = join(dir, vllmExampleFolderName(prompt.slice(0, 32)));
    await mkdir(folder);
    await writeFile(join(folder, "stale.safetensors"), "old");
    const sink = createVllmExampleSink({
      directory: dir,
      promptTokenIds: prompt,
      layerNames: ["attn0"],
      replace: true,
    });
    await sink.open(cache.descriptor);
    await sink.writeLayer(cache.layer(0));
    await sink.commit(stats);
    expect(await readdir(dir)).toEqual([vllmExampleFolderName(prompt.slice(0, 32))]);
    expect(await readdir(folder)).toEqual(["attn0.safetensors"]);
  });

  it("abort deletes the temporary folder; nothing visible is created", async () => {
    const cache = randomCache(mhaDescriptor({ dtype: "f16" }));
    const sink = createVllmExampleSink({ directory: dir, promptTokenIds: prompt });
    await sink.open(cache.descriptor);
    await sink.writeLayer(cache.layer(0));
    await sink.writeLayer(cache.layer(1));
    expect((await readdir(dir)).length).toBe(1);
    await sink.abort(new Error("stream failed"));
    expect(await readdir(dir)).toEqual([]);
    await expectOpalError(Promise.resolve(sink.commit(stats)), Code.CANCELLED);
  });

  it("rejects caches the ExampleConnector cannot take, naming expected vs actual", async () => {
    const cases: [
      Parameters<typeof createVllmExampleSink>[0],
      ReturnType<typeof mhaDescriptor>,
      string,
    ][] = [
      [
        { directory: dir, promptTokenIds: prompt },
        mhaDescriptor({ dtype: "fp8_e4m3fn", scaleScheme: "per_tensor" }),
        "scaleScheme: the ExampleConnector file carries no scales (vLLM's fp8 cache has static per-layer scales: pass fp8), the cache has per_tensor scales",
      ],
      [
        { directory: dir, promptTokenIds: prompt },
        mhaDescriptor({ tokenStart: 16, tokenCount: 21 }),
        "tokens: vLLM loads tokens [0, 32) of the 37-token prompt, the cache holds tokens [16, 37)",
      ],
      [
        { directory: dir, promptTokenIds: prompt.slice(0, 16) },
        mhaDescriptor({ tokenCount: 16 }),
        "tokens: vLLM stores no tokens for a prompt of 16 at block size 16, the cache holds 16",
      ],
    ];
    cases.push(
      [
        { directory: dir, promptTokenIds: prompt.slice(0, 32) },
        mhaDescriptor({ tokenCount: 31 }),
        "tokens: vLLM loads tokens [0, 32) of the 32-token prompt, the cache holds tokens [0, 31)",
      ],
      [
        { directory: dir, promptTokenIds: prompt, tensorParallelSize: 2 },
        mhaDescriptor(),
        "tensorParallelSize: ",
      ],
      [
        {
          directory: dir,
          promptTokenIds: prompt,
          fp8: { dtype: "fp8_e4m3fn", kScale: 1, vScale: 1 },
        },
        mhaDescriptor({ dtype: "fp8_e4m3fn" }),
        "dtype: an f32, f16 or bf16 cache to quantise to fp8, the cache is fp8_e4m3fn",
      ],
    );
    for (const [options, d, message] of cases) {
      const error = await expectOpalError(
        Promise.resolve(createVllmExampleSink(options).open(d)),
        Code.FAILED_PRECONDITION,
        Reason.DESCRIPTOR_MISMATCH,
      );
      if (message.endsWith(": ")) expect(error.message).toMatch(/no TP rank/);
      else expect(error.message).toBe(`[failed_precondition] ${message}`);
    }
    expect(await readdir(dir)).toEqual([]);
    expect(() => createVllmExampleSink({ directory: "", promptTokenIds: prompt })).toThrow(
      '[invalid_argument] directory: expected a non-empty folder path, got ""',
    );
    expect(() =>
      createVllmExampleSink({ directory: dir, promptTokenIds: prompt, layerNames: ["../x"] }),
    ).toThrow(
      '[invalid_argument] layerNames[0]: expected a file name of letters, digits, _ . -, got "../x"',
    );
    expect(() => createVllmExampleSink({ directory: dir, promptTokenIds: [1, -2] })).toThrow(
      "[invalid_argument] promptTokenIds[1]: expected an integer >= 0, got -2",
    );
  });
});
