import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as root from "@opal/kv";
import * as hashing from "@opal/kv/hashing";
import * as layouts from "@opal/kv/layouts";
import * as okv from "@opal/kv/okv";
import * as safetensors from "@opal/kv/safetensors";
import { describe, expect, it } from "vitest";

const packageDir = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The run-time names each sub-path promises (types are checked by tsc on the importers). */
const AREAS: Record<string, string[]> = {
  okv: [
    "OKV_DEFAULT_MAX_FRAME_BYTES",
    "OKV_MAGIC",
    "OKV_VERSION_MAJOR",
    "OKV_VERSION_MINOR",
    "createOkvDecoder",
    "decodeOkv",
    "decodeOkvBytes",
    "encodeOkv",
    "encodeOkvBytes",
    "encodeOkvChunks",
    "encodeOkvPieces",
    "readOkvLayer",
  ],
  safetensors: [
    "SAFETENSORS_DTYPE_SIZES",
    "SAFETENSORS_KV_DESCRIPTOR_KEY",
    "SAFETENSORS_MAX_HEADER_BYTES",
    "VLLM_EXAMPLE_DEFAULT_VERSION",
    "VLLM_EXAMPLE_VERSIONS",
    "assertVllmExampleTensorParallel",
    "decodeSafetensors",
    "decodeSafetensorsKv",
    "decodeVllmExampleLayer",
    "encodeSafetensors",
    "encodeSafetensorsHeader",
    "encodeSafetensorsPieces",
    "encodeVllmExampleLayer",
    "fromSafetensorsDtype",
    "readVllmExampleFolder",
    "toSafetensorsDtype",
    "vllmExampleFits",
    "vllmExampleFolderName",
    "vllmExampleFolders",
    "vllmExampleTokenCount",
    "vllmLayerName",
    "vllmStaticScale",
    "writeVllmExampleFolder",
    "writeVllmExampleHandoff",
  ],
  layouts: [
    "LMCACHE_CHUNK_TOKENS",
    "VLLM_KV_CACHE_LAYOUTS",
    "VLLM_KV_CACHE_LAYOUT_ALIASES",
    "VLLM_LEGACY_LAYOUTS",
    "fromLmcacheChunks",
    "fromSglangLayer",
    "fromVllmPagedLayer",
    "fromVllmStandardLayer",
    "headRangeOf",
    "isLegacyVllmVersion",
    "mergeKvHeads",
    "resolveVllmPoolLayout",
    "rowBytesOf",
    "sliceKvHeads",
    "toKvLayout",
    "toLmcacheChunks",
    "toSglangLayer",
    "toVllmPagedLayer",
    "toVllmStandardLayer",
    "transposeKvPart",
    "vllmPoolByteLength",
    "vllmPoolShapeOf",
    "vllmStandardGeometry",
    "vllmStrideOrder",
  ],
  hashing: [
    "VLLM_BLOCK_HASH_ALGORITHMS",
    "VLLM_DEFAULT_NONE_HASH_SEED",
    "blockHashByteLength",
    "computeBlockHashes",
    "computeOpalBlockHashes",
    "encodeCbor",
    "encodeMsgpack",
    "encodePickle",
    "hashBlockTokens",
    "isCryptographicBlockHash",
    "kvEventBlockHash",
    "noneHashOf",
    "sha256Cbor",
    "vllmHash",
  ],
};

/** What a program sees of each sub-path: its names, and whether each is the root's own value. */
type Seen = Record<string, { names: string[]; sameAsRoot: boolean }>;

function expectAreas(seen: Seen) {
  for (const [area, names] of Object.entries(AREAS)) {
    expect(seen[area]?.names, area).toEqual([...names].sort());
    expect(seen[area]?.sameAsRoot, `${area}: same values as @opal/kv`).toBe(true);
  }
}

const probe = (load: string) => `${load}
const seen = {};
for (const [area, sub] of Object.entries(areas)) {
  const names = Object.keys(sub).sort();
  seen[area] = { names, sameAsRoot: names.every((name) => sub[name] === root[name]) };
}
console.log(JSON.stringify(seen));`;

const esm = probe(`const root = await import("@opal/kv");
const areas = {};
for (const area of ${JSON.stringify(Object.keys(AREAS))}) areas[area] = await import(\`@opal/kv/\${area}\`);`);
const cjs = probe(`const root = require("@opal/kv");
const areas = {};
for (const area of ${JSON.stringify(Object.keys(AREAS))}) areas[area] = require(\`@opal/kv/\${area}\`);`);

function run(args: string[], code: string): Seen {
  const result = spawnSync(process.execPath, [...args, "-e", code], {
    encoding: "utf8",
    cwd: packageDir,
    timeout: 30_000,
  });
  expect(result.stderr).toBe("");
  return JSON.parse(result.stdout) as Seen;
}

describe("sub-path exports of @opal/kv", () => {
  it("each names its area, the same values as the root export (from source, in the tests)", () => {
    const modules = { okv, safetensors, layouts, hashing } as Record<string, object>;
    const seen: Seen = {};
    for (const [area, sub] of Object.entries(modules)) {
      const names = Object.keys(sub).sort();
      seen[area] = {
        names,
        sameAsRoot: names.every(
          (name) =>
            (sub as Record<string, unknown>)[name] === (root as Record<string, unknown>)[name],
        ),
      };
    }
    expectAreas(seen);
  });

  it("resolve through the package's `source` condition in Node", () => {
    expectAreas(run(["--conditions=source", "--import", "tsx", "--input-type=module"], esm));
  });

  const built = existsSync(join(packageDir, "dist/okv.js"));
  if (!built && process.env.CI) throw new Error("@opal/kv is not built: npm test builds it first");
  it.skipIf(!built)("resolve to the build under `import` and `require`, sharing its code", () => {
    expectAreas(run(["--input-type=module"], esm));
    expectAreas(run(["--input-type=commonjs"], cjs));
  });
});
