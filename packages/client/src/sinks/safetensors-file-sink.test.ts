import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Code, Reason } from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import {
  createKvCache,
  decodeSafetensors,
  fromFloat32,
  type KvCache,
  type KvDescriptor,
  partsOf,
  toFloat32,
  toFloat32View,
} from "@opal/kv";
import { expectOpalError } from "@opal/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  coordinateCache,
  coordinateValue,
  mhaDescriptor,
  mlaDescriptor,
  randomCache,
} from "../../../kv/test/fixtures";
import { createSafetensorsFileSink, SAFETENSORS_DESCRIPTOR_KEY } from "./safetensors-file-sink";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";
const stats = {} as PrefillStats;

/** Reads safetensors files with json + struct + numpy only; prints every tensor's values. */
const READER = `
import json, struct, sys
import numpy as np
DTYPES = {"F32": "<f4", "F16": "<f2", "I8": "i1", "U8": "u1"}
out = []
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = data[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors, end = {}, 0
    for name, t in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
        begin, stop = t["data_offsets"]
        assert begin == end, (name, begin, end)
        end = stop
        arr = np.frombuffer(body[begin:stop], dtype=np.dtype(DTYPES[t["dtype"]])).reshape(t["shape"])
        tensors[name] = {"dtype": t["dtype"], "shape": list(arr.shape),
                         "values": arr.astype(np.float64).ravel().tolist()}
    assert end == len(body), (end, len(body))
    out.append({"metadata": meta, "tensors": tensors})
print(json.dumps(out))
`;

interface PyTensor {
  dtype: string;
  shape: number[];
  values: number[];
}

async function numpyMissing(): Promise<string | undefined> {
  try {
    await run(PYTHON, ["-c", "import numpy"]);
    return undefined;
  } catch {
    return `${PYTHON} cannot import numpy (apt-get install python3-numpy)`;
  }
}

/** An f16 cache of small exact values (no NaN or infinity, which JSON cannot carry). */
function f16Cache(descriptor: KvDescriptor): KvCache {
  const cache = createKvCache(descriptor);
  let s = 1;
  for (let layer = 0; layer < descriptor.numLayers; layer++) {
    for (const part of partsOf(descriptor)) {
      const view = cache.part(layer, part);
      const values = Float32Array.from(
        { length: view.byteLength / 2 },
        () => ((s++ * 37) % 2001) / 8 - 125,
      );
      view.set(fromFloat32(values, "f16"));
    }
  }
  return cache;
}

async function writeThroughSink(cache: KvCache, path: string) {
  const sink = createSafetensorsFileSink({ path });
  await sink.open(cache.descriptor);
  for (let layer = 0; layer < cache.descriptor.numLayers; layer++)
    await sink.writeLayer(cache.layer(layer));
  return sink.commit(stats);
}

let dir = "";
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "opal-st-sink-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("createSafetensorsFileSink", () => {
  const hnd = coordinateCache(mhaDescriptor({ layout: "hnd", headRange: { start: 1, count: 2 } }));
  const mla = coordinateCache(mlaDescriptor({ tokenStart: 3 }));
  const int8 = randomCache(mhaDescriptor({ dtype: "int8", scaleScheme: "per_token" }));
  const f16 = f16Cache(mhaDescriptor({ dtype: "f16", numLayers: 12, tokenCount: 5 }));
  const cases: [string, KvCache][] = [
    ["f32 hnd heads 1-2", hnd],
    ["f32 mla", mla],
    ["int8 per_token scales", int8],
    ["f16, 12 layers", f16],
  ];

  it("writes files numpy reads back to the cache's values, in the descriptor's shapes", async (ctx) => {
    const missing = await numpyMissing();
    if (missing) {
      if (process.env.CI) throw new Error(`numpy unavailable in CI: ${missing}`);
      return ctx.skip(missing);
    }
    const paths: string[] = [];
    for (const [name, cache] of cases) {
      const path = join(dir, `${name.replace(/\W+/g, "-")}.safetensors`);
      const receipt = await writeThroughSink(cache, path);
      expect(receipt).toEqual({ path, byteLength: (await readFile(path)).byteLength });
      paths.push(path);
    }
    const { stdout } = await run(PYTHON, ["-c", READER, ...paths], { maxBuffer: 64 << 20 });
    const files = JSON.parse(stdout) as {
      metadata: Record<string, string>;
      tensors: Record<string, PyTensor>;
    }[];
    cases.forEach(([, cache], i) => {
      const d = cache.descriptor;
      const file = files[i] as (typeof files)[number];
      expect(JSON.parse(file.metadata[SAFETENSORS_DESCRIPTOR_KEY] as string)).toEqual(d);
      expect(Object.keys(file.tensors).length).toBe(d.numLayers * partsOf(d).length);
      for (let layer = 0; layer < d.numLayers; layer++) {
        for (const part of partsOf(d)) {
          const tensor = file.tensors[`layers.${layer}.${part}`] as PyTensor;
          const bytes = cache.part(layer, part);
          const scale = part.endsWith("_scale");
          const expected = scale ? toFloat32View(bytes) : toFloat32(bytes, d.dtype);
          expect(tensor.values).toEqual(Array.from(expected));
          expect(tensor.dtype).toBe(
            scale ? "F32" : { f32: "F32", f16: "F16", int8: "I8" }[d.dtype as string],
          );
        }
      }
    });
    // Shapes carry meaning: index the numpy arrays by (head, token, dim) / (token, 0, dim).
    const at = (t: PyTensor, index: number[]) =>
      t.values[index.reduce((flat, x, k) => flat * (t.shape[k] as number) + x, 0)];
    const hk = (files[0] as (typeof files)[number]).tensors["layers.2.v"] as PyTensor;
    expect(hk.shape).toEqual([2, 37, 8]);
    expect(at(hk, [1, 30, 5])).toBe(coordinateValue(2, 1, 30, 2, 5));
    const ml = (files[1] as (typeof files)[number]).tensors["layers.1.latent"] as PyTensor;
    expect(ml.shape).toEqual([37, 1, 20]);
    expect(at(ml, [4, 0, 19])).toBe(coordinateValue(1, 0, 3 + 4, 0, 19));
    const sc = (files[2] as (typeof files)[number]).tensors["layers.0.k_scale"] as PyTensor;
    expect(sc.shape).toEqual([37]);
  });

  it("writes a file @opal/kv's strict safetensors decoder accepts", async () => {
    const path = join(dir, "strict.safetensors");
    await writeThroughSink(int8, path);
    const file = decodeSafetensors(new Uint8Array(await readFile(path)));
    expect(file.tensors.get("layers.2.v")?.shape).toEqual([37, 4, 8]);
    expect(
      Buffer.compare(file.tensors.get("layers.2.v")?.data as Uint8Array, int8.part(2, "v")),
    ).toBe(0);
  });

  it("abort deletes the partial file; nothing appears at `path`", async () => {
    const sub = await mkdtemp(join(dir, "abort-"));
    const sink = createSafetensorsFileSink({ path: join(sub, "kv.safetensors") });
    await sink.open(hnd.descriptor);
    await sink.writeLayer(hnd.layer(0));
    expect((await readdir(sub)).length).toBe(1);
    await sink.abort(new Error("stream failed"));
    expect(await readdir(sub)).toEqual([]);
    await expectOpalError(Promise.resolve(sink.commit(stats)), Code.CANCELLED);
  });

  it("a missing folder fails at open with FAILED_PRECONDITION naming the folder, leaving nothing", async () => {
    const sub = await mkdtemp(join(dir, "missing-"));
    const sink = createSafetensorsFileSink({ path: join(sub, "nope", "kv.safetensors") });
    const error = await expectOpalError(
      Promise.resolve(sink.open(hnd.descriptor)),
      Code.FAILED_PRECONDITION,
    );
    expect(error.message).toContain(`its directory ${join(sub, "nope")} does not exist`);
    expect(await readdir(sub)).toEqual([]);
  });

  it("rejects a bad path and a mis-sized layer with typed errors naming expected vs actual", async () => {
    expect(() => createSafetensorsFileSink({ path: "" })).toThrow(
      '[invalid_argument] path: expected a non-empty file path, got ""',
    );
    const sub = await mkdtemp(join(dir, "bad-"));
    const sink = createSafetensorsFileSink({ path: join(sub, "kv.safetensors") });
    await sink.open(hnd.descriptor);
    const error = await expectOpalError(
      Promise.resolve(sink.writeLayer(mla.layer(0))),
      Code.INVALID_ARGUMENT,
      Reason.INVALID_FIELD,
    );
    expect(error.message).toContain("part k: expected 2368 bytes, got none");
    expect(await readdir(sub)).toEqual([]);
  });
});
