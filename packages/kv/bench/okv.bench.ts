/**
 * .okv encode and decode throughput on a 256 MiB bf16 cache, against memcpy (TypedArray.set into a
 * warm buffer, best of 5) of the same size measured in the same run. "kv/okv-encode" and
 * "kv/okv-decode" are the figures (CRC32C on every frame, whole file in memory, payloads
 * are views); the "+digest" lines add the whole-cache digest (XXH3-128), "1MiB-chunks" feeds the
 * decoder in 1 MiB pieces as a file or socket would (one copy per byte into a new cache, so its
 * baseline is memcpy into new memory: both pay the page faults), "-reuse" recycles layer buffers
 * (warm memory, the warm memcpy baseline). Run: node --conditions=source --import tsx
 * packages/kv/bench/okv.bench.ts
 */
import {
  cacheByteLength,
  createKvCache,
  createOkvDecoder,
  encodeOkvBytes,
  encodeOkvPieces,
  partsOf,
} from "../src/index";
import { mhaDescriptor } from "../test/fixtures";
import { bestSeconds, freshMemcpyGBps, memcpyGBps, reportRatio } from "./report";

const descriptor = mhaDescriptor({
  numLayers: 32,
  attention: { kind: "mha", numKvHeads: 8, headDim: 128 },
  headRange: { start: 0, count: 8 },
  dtype: "bf16",
  tokenCount: 2048,
});
const bytes = cacheByteLength(descriptor); // 256 MiB
const cache = createKvCache(descriptor);
for (let l = 0; l < descriptor.numLayers; l++)
  for (const p of partsOf(descriptor)) cache.part(l, p).fill(l * 7 + 1);

const memcpy = memcpyGBps(bytes);
const drain = (computeDigest: boolean) => () => {
  let n = 0;
  for (const piece of encodeOkvPieces(cache, { computeDigest })) n += piece.byteLength;
  if (n < bytes) throw new Error("short");
};
reportRatio("kv/okv-encode", bytes / bestSeconds(drain(false), 3) / 1e9, memcpy, 0.5);
reportRatio("kv/okv-encode+digest", bytes / bestSeconds(drain(true), 3) / 1e9, memcpy, 0.5);

const file = encodeOkvBytes(cache);
const decode =
  (verifyDigest: boolean, chunk: number, reuseLayerBuffers = false) =>
  () => {
    const decoder = createOkvDecoder({ verifyDigest, reuseLayerBuffers });
    for (let i = 0; i < file.byteLength; i += chunk)
      for (const _ of decoder.feed(file.subarray(i, i + chunk)));
    decoder.end();
  };
reportRatio(
  "kv/okv-decode",
  bytes / bestSeconds(decode(false, file.byteLength), 3) / 1e9,
  memcpy,
  0.5,
);
reportRatio(
  "kv/okv-decode-1MiB-chunks",
  bytes / bestSeconds(decode(false, 1 << 20), 3) / 1e9,
  freshMemcpyGBps(bytes),
  0.5,
  "memcpy into new memory",
);
reportRatio(
  "kv/okv-decode-1MiB-chunks-reuse",
  bytes / bestSeconds(decode(false, 1 << 20, true), 3) / 1e9,
  memcpy,
  0.5,
);
reportRatio(
  "kv/okv-decode+digest",
  bytes / bestSeconds(decode(true, file.byteLength), 3) / 1e9,
  memcpy,
  0.5,
);
