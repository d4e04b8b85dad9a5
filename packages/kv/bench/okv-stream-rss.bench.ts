/**
 * Streaming decode of a 4 GiB .okv file: peak RSS of the decoding process must stay under 256 MiB.
 * Generates the file in a temp dir (streamed, layer by layer), decodes it in a child process that
 * reports its own peak RSS, then deletes the file.
 * Run: node --conditions=source --import tsx packages/kv/bench/okv-stream-rss.bench.ts
 */
import { spawnSync } from "node:child_process";
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { cacheByteLength, decodeOkv, encodeOkv, type KvLayerParts } from "../src/index";
import { mhaDescriptor } from "../test/fixtures";
import { peakRssMiB, reportMiB } from "./report";

const descriptor = mhaDescriptor({
  numLayers: 128,
  attention: { kind: "mha", numKvHeads: 8, headDim: 128 },
  headRange: { start: 0, count: 8 },
  dtype: "bf16",
  tokenCount: 8192, // 16 MiB per part, 32 MiB per layer, 4 GiB in all
});

async function decodeFile(path: string): Promise<void> {
  let layers = 0;
  const start = performance.now();
  for await (const event of decodeOkv(createReadStream(path, { highWaterMark: 1 << 20 }), {
    verifyDigest: true,
    reuseLayerBuffers: true,
  })) {
    if (event.kind === "layer") layers++;
  }
  const seconds = (performance.now() - start) / 1000;
  if (layers !== descriptor.numLayers) throw new Error(`decoded ${layers} layers`);
  const maxRssMiB = peakRssMiB();
  process.stdout.write(`${JSON.stringify({ maxRssMiB, seconds })}\n`);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "opal-kv-rss-"));
  const path = join(dir, "cache.okv");
  try {
    const k = new Uint8Array(16 << 20);
    const v = new Uint8Array(16 << 20);
    async function* layers(): AsyncGenerator<KvLayerParts> {
      for (let layer = 0; layer < descriptor.numLayers; layer++) {
        k.fill(layer);
        v.fill(255 - layer);
        yield { layer, parts: { k, v } };
      }
    }
    const out = createWriteStream(path);
    for await (const piece of encodeOkv(layers(), { descriptor })) {
      if (!out.write(piece))
        await new Promise<void>((resolve) => out.once("drain", () => resolve()));
    }
    await new Promise<void>((resolve, reject) =>
      out.end((error?: Error | null) => (error ? reject(error) : resolve())),
    );
    const child = spawnSync(
      process.execPath,
      [...process.execArgv, fileURLToPath(import.meta.url), "--decode", path],
      {
        encoding: "utf8",
        maxBuffer: 1 << 20,
      },
    );
    if (child.status !== 0) throw new Error(`decode child failed: ${child.stderr}`);
    const { maxRssMiB, seconds } = JSON.parse(child.stdout.trim().split("\n").pop() as string);
    reportMiB("kv/okv-stream-decode-4GiB-peak-rss", maxRssMiB, 256);
    // Informational: end-to-end streaming throughput from the file, CRC and digest verified.
    console.error(
      `streamed ${cacheByteLength(descriptor) / 2 ** 30} GiB in ${seconds.toFixed(1)} s`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--decode") await decodeFile(process.argv[3] as string);
else await main();
