import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PrefillRequest } from "@opal/driver";
import {
  decodeOkvBytes,
  decodeSafetensors,
  fromKvParts,
  fromLmcacheChunks,
  fromSglangLayer,
  fromVllmPagedLayer,
  fromVllmStandardLayer,
  type KvCache,
  type KvDescriptor,
  type KvPart,
  readVllmExampleFolder,
  vllmPoolByteLength,
  vllmStandardGeometry,
} from "@opal/kv";
import { serveMockDevice } from "@opal/mock";
import {
  createPresetWeights,
  createReferenceModel,
  fromKvCache,
  type ReferenceKvCache,
  sampleGreedy,
} from "@opal/reference";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDeviceClient, type DeviceClient } from "../src/device-client/create-device-client";
import { startPrefill } from "../src/prefill/start-prefill";
import type { KvSink } from "../src/sinks/kv-sink";
import { createLmcacheSink } from "../src/sinks/lmcache-sink";
import { createMemorySink } from "../src/sinks/memory-sink";
import { createOkvFileSink } from "../src/sinks/okv-file-sink";
import {
  createSafetensorsFileSink,
  SAFETENSORS_DESCRIPTOR_KEY,
} from "../src/sinks/safetensors-file-sink";
import { createSglangSink } from "../src/sinks/sglang-sink";
import { createVllmExampleSink } from "../src/sinks/vllm-example-sink";
import { createVllmPagedSink } from "../src/sinks/vllm-paged-sink";

// End to end on loopback: prefill on the mock over gRPC, hand the cache off through each sink,
// read it back the way that decoder would, and continue decoding with the reference model: the
// tokens must equal a monolithic run's.
const model = createReferenceModel(createPresetWeights("opal-tiny"));
const config = model.config;
const prompt = Uint32Array.from({ length: 45 }, (_, i) => [256, 72, 101, 108, 108, 111][i % 6]!);
const NEW_TOKENS = 12;
const monolithic = Array.from(
  model.generate(prompt, { maxNewTokens: NEW_TOKENS, stopOnEos: false }),
);
const heads = config.numKeyValueHeads;
const dim = config.headDim;
const layers = config.numHiddenLayers;

let mock: Awaited<ReturnType<typeof serveMockDevice>>;
let device: DeviceClient;
let dir: string;
let n = 0;
beforeAll(async () => {
  mock = await serveMockDevice({ models: ["opal-tiny"] });
  device = createDeviceClient(mock.address);
  dir = mkdtempSync(join(tmpdir(), "opal-handoff-"));
});
afterAll(async () => {
  await device.close();
  await mock.close({ graceMs: 100 });
  rmSync(dir, { recursive: true, force: true });
});

const request = (): PrefillRequest => ({
  requestId: `handoff-${++n}`,
  modelId: "opal-tiny",
  promptTokenIds: prompt,
  kvFormat: { dtype: "f32", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  maxChunkBytes: 1000,
});

/** Continues from `cache` (holding `cache.numTokens` prompt tokens) like a decoder would. */
function continueFrom(cache: ReferenceKvCache, firstTokenId: number): number[] {
  let past = cache;
  let first = firstTokenId;
  if (past.numTokens < prompt.length) {
    // Like vLLM with the ExampleConnector: recompute the prompt tokens the cache does not hold.
    const rest = model.prefill(prompt.subarray(past.numTokens), { past });
    past = rest.cache;
    first = sampleGreedy(rest.logits);
  }
  const tokens = [first];
  while (tokens.length < NEW_TOKENS)
    tokens.push(sampleGreedy(model.decodeStep(tokens.at(-1)!, past)));
  return tokens;
}

/** Hands off through `sink`, returning the outcome and the descriptor the sink was opened with. */
async function handoff<R>(sink: () => KvSink<R>) {
  let descriptor: KvDescriptor | undefined;
  const capture = () => {
    const inner = sink();
    const wrapped: KvSink<R> = {
      open(d) {
        descriptor = d;
        return inner.open(d);
      },
      writeLayer: (layer) => inner.writeLayer(layer),
      commit: (stats) => inner.commit(stats),
      abort: (reason) => inner.abort(reason),
    };
    return wrapped;
  };
  const outcome = await startPrefill(device, request(), { sink: capture }).result;
  if (!descriptor) throw new Error("the sink was never opened");
  return { ...outcome, descriptor };
}

describe("handoff to decoders through every sink, then decoding from the handed-off cache", () => {
  it("memory", async () => {
    const { receipt, stats } = await handoff(createMemorySink);
    expect(continueFrom(fromKvCache(config, receipt), stats.firstTokenId)).toEqual(monolithic);
  });

  it(".okv file", async () => {
    const path = join(dir, "cache.okv");
    const { stats } = await handoff(() => createOkvFileSink({ path }));
    const cache = decodeOkvBytes(new Uint8Array(readFileSync(path)));
    expect(continueFrom(fromKvCache(config, cache), stats.firstTokenId)).toEqual(monolithic);
  });

  it("safetensors file", async () => {
    const path = join(dir, "cache.safetensors");
    const { stats } = await handoff(() => createSafetensorsFileSink({ path }));
    const file = decodeSafetensors(new Uint8Array(readFileSync(path)));
    const descriptor = JSON.parse(file.metadata[SAFETENSORS_DESCRIPTOR_KEY]!) as KvDescriptor;
    const parts = Array.from({ length: layers }, (_, l) => ({
      k: Uint8Array.from(file.tensors.get(`layers.${l}.k`)!.data),
      v: Uint8Array.from(file.tensors.get(`layers.${l}.v`)!.data),
    }));
    expect(
      continueFrom(fromKvCache(config, fromKvParts(descriptor, parts)), stats.firstTokenId),
    ).toEqual(monolithic);
  });

  for (const order of ["flash_attn", "flashinfer"] as const) {
    for (const layout of ["nhd", "hnd"] as const) {
      it(`vLLM paged pool (${order}, ${layout})`, async () => {
        const blockSizeTokens = 16;
        const numBlocks = 8;
        const blockTable = [5, 2, 7];
        const geometry = { order, physicalLayout: layout, numBlocks, blockTable, blockSizeTokens };
        const bytes = vllmPoolByteLength({ ...requestDescriptor(), tokenCount: 1 }, geometry);
        const pools = Array.from({ length: layers }, () => new Uint8Array(bytes));
        const { stats, descriptor } = await handoff(() =>
          createVllmPagedSink({
            ...geometry,
            vllmVersion: "0.28",
            layout,
            pools,
            dtype: "f32",
            numKvHeads: heads,
            headSize: dim,
          }),
        );
        const parts = pools.map((pool) =>
          fromVllmPagedLayer(pool, { ...geometry, descriptor: descriptor }),
        );
        expect(
          continueFrom(fromKvCache(config, fromKvParts(descriptor, parts)), stats.firstTokenId),
        ).toEqual(monolithic);
      });
    }
  }

  for (const layout of ["LBNHC", "BLHNC"] as const) {
    it(`vLLM >= 0.29 allocation (${layout}, kernel blocks of 8)`, async () => {
      const geometry = {
        layout,
        numLayers: layers,
        numBlocks: 8,
        blockTable: [5, 2, 7],
        blockSizeTokens: 16,
        kernelBlockSizeTokens: layout === "LBNHC" ? 8 : undefined,
      };
      const shape = {
        attention: "mha" as const,
        numKvHeads: heads,
        headSize: dim,
        dtype: "f32" as const,
      };
      const allocation = new Uint8Array(vllmStandardGeometry(shape, geometry).byteLength);
      const { stats, descriptor } = await handoff(() =>
        createVllmPagedSink({ ...geometry, ...shape, allocation }),
      );
      const parts = Array.from({ length: layers }, (_, layer) =>
        fromVllmStandardLayer(allocation, { ...geometry, descriptor, layer }),
      );
      expect(
        continueFrom(fromKvCache(config, fromKvParts(descriptor, parts)), stats.firstTokenId),
      ).toEqual(monolithic);
    });
  }

  it("vLLM ExampleConnector folder (vLLM recomputes the tokens past the last full block)", async () => {
    const { stats, receipt, descriptor } = await handoff(() =>
      createVllmExampleSink({ directory: dir, promptTokenIds: prompt, blockSizeTokens: 16 }),
    );
    expect(receipt.tokens).toBe(32);
    // The folder is named by the hash of the stored (truncated) token ids, as vLLM names it.
    const tokenIds = prompt.subarray(0, receipt.tokens);
    const cache = await readVllmExampleFolder(
      { ...descriptor, tokenCount: receipt.tokens },
      { storagePath: dir, tokenIds },
    );
    expect(continueFrom(fromKvCache(config, cache), stats.firstTokenId)).toEqual(monolithic);
  });

  it("SGLang per-layer token buffers", async () => {
    const slots = Array.from({ length: prompt.length }, (_, i) => 100 - i);
    const slotBytes = heads * dim * 4;
    const kBuffers = Array.from({ length: layers }, () => new Uint8Array(128 * slotBytes));
    const vBuffers = Array.from({ length: layers }, () => new Uint8Array(128 * slotBytes));
    const { stats, descriptor } = await handoff(() =>
      createSglangSink({ kBuffers, vBuffers, slots, dtype: "f32", headNum: heads, headDim: dim }),
    );
    const parts = kBuffers.map((kBuffer, l) =>
      fromSglangLayer({ kBuffer, vBuffer: vBuffers[l]! }, { slots, descriptor: descriptor }),
    );
    expect(
      continueFrom(
        fromKvCache(config, fromKvParts(descriptor, parts as Record<KvPart, Uint8Array>[])),
        stats.firstTokenId,
      ),
    ).toEqual(monolithic);
  });

  it("LMCache 256-token chunks", async () => {
    const { receipt, stats } = await handoff(() => createLmcacheSink());
    const cache: KvCache = fromLmcacheChunks(receipt.chunks, receipt.descriptor, {
      chunkSizeTokens: receipt.chunkSizeTokens,
    });
    expect(continueFrom(fromKvCache(config, cache), stats.firstTokenId)).toEqual(monolithic);
  });
});

function requestDescriptor(): KvDescriptor {
  return {
    modelFingerprint: model.fingerprint,
    numLayers: layers,
    attention: { kind: "mha", numKvHeads: heads, headDim: dim },
    headRange: { start: 0, count: heads },
    dtype: "f32",
    scaleScheme: "none",
    layout: "nhd",
    tokenStart: 0,
    tokenCount: prompt.length,
    blockSizeTokens: 16,
    numerics: {
      deviceKind: "reference",
      precisionPath: "",
      bitExact: true,
      maxAbsError: 0,
      maxRelError: 0,
    },
  };
}
