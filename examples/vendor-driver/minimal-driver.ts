// A complete minimal vendor driver: one model, bf16/f32 KV in NHD layout, no retention. Replace
// the step marked "The computation" with calls into your hardware; everything else is the
// contract. Serve it with `createDeviceServer(createMinimalDriver(), { port: 50051 })`: the host
// holds the prefill slots and queue, request identity (PF-5..7), cancellation and deadlines, and
// refuses what the capabilities leave out (uploads, FetchKv without retention), so those stubs
// below are never called over gRPC.
import { randomBytes } from "node:crypto";
import { Code, OpalError, Reason, sleep } from "@opal/core";
import {
  createCapabilities,
  DRIVER_API_VERSION,
  type ModelInfo,
  type PrefillDriver,
  streamKvCache,
  validatePrefillRequest,
} from "@opal/driver";
import { fromFloat32, fromKvParts, type KvDescriptor } from "@opal/kv";
import { createPresetWeights, createReferenceModel, sampleGreedy } from "@opal/reference";

export function createMinimalDriver(): PrefillDriver {
  const model = createReferenceModel(createPresetWeights("opal-tiny"));
  const { config } = model;
  const info: ModelInfo = {
    modelId: "opal-tiny",
    fingerprint: model.fingerprint,
    architecture: "LlamaForCausalLM",
    numLayers: config.numHiddenLayers,
    attention: { kind: "mha", numKvHeads: config.numKeyValueHeads, headDim: config.headDim },
    vocabSize: config.vocabSize,
    maxPositionEmbeddings: config.maxPositionEmbeddings,
  };
  const capabilities = createCapabilities({ dtypes: ["bf16", "f32"], maxPromptTokens: 2048 });
  const unsupported = (what: string) =>
    new OpalError(Code.UNIMPLEMENTED, `${what} is not supported`, {
      reason: Reason.UNSUPPORTED_FEATURE,
    });
  const idle = { utilization: 0, queueDepth: 0, activePrefills: 0, retainedKvBytes: 0 };

  return {
    driverApiVersion: DRIVER_API_VERSION,
    getInfo: async () => ({
      ...{ protocolVersion: "1.0.0", vendor: "Example", product: "Minimal", deviceId: "minimal-0" },
      ...{ firmwareVersion: "1", driverVersion: "1", extensions: [] },
    }),
    getCapabilities: async () => capabilities,
    probe: async () => "ready",
    listModels: async () => [info],
    loadModel: async () => Promise.reject(unsupported("LoadModel")),
    unloadModel: async () => ({ wasLoaded: false }),
    async *prefill(received, options) {
      // The request as received (enums may be unknown): checked first, in the protocol's order.
      const loaded = received.modelId === info.modelId ? info : undefined;
      const valid = validatePrefillRequest(received, { capabilities, model: loaded });
      const { request } = valid;
      const tokens = request.promptTokenIds;
      const descriptor: KvDescriptor = {
        ...{ modelFingerprint: info.fingerprint, numLayers: info.numLayers },
        ...{ attention: info.attention, headRange: valid.headRange, dtype: request.kvFormat.dtype },
        ...{ scaleScheme: "none", layout: "nhd", tokenStart: 0, tokenCount: tokens.length },
        ...{ blockSizeTokens: 16, numerics: capabilities.numerics },
      };
      // The computation: K (after rotary) and V per layer, [tokens][kvHeads][headDim] f32.
      const { cache, logits } = model.prefill(tokens, { signal: options?.signal });
      // Only the requested heads (head_range) of each token's row.
      const [{ start, count }, H, D] = [valid.headRange, config.numKeyValueHeads, config.headDim];
      const at = (i: number) => (Math.floor(i / (count * D)) * H + start) * D + (i % (count * D));
      const part = (rows: Float32Array) =>
        fromFloat32(
          Float32Array.from({ length: tokens.length * count * D }, (_, i) => rows[at(i)]!),
          descriptor.dtype,
        );
      const layers = cache.keys.map((k, l) => ({ k: part(k), v: part(cache.values[l]!) }));
      yield* streamKvCache(fromKvParts(descriptor, layers), {
        kvHandle: randomBytes(16).toString("base64url"),
        chunkBytes: valid.chunkBytes,
        ...(options?.signal ? { signal: options.signal } : {}),
        stats: {
          ...{ promptTokens: tokens.length, prefixCacheHitTokens: 0, decoderPrefixTokens: 0 },
          ...{ firstTokenId: sampleGreedy(logits), firstTokenLogprob: 0 },
          ...{ deviceTimeUs: 0, energyJoules: 0 },
        },
      });
    },
    fetchKv: () => {
      throw unsupported("FetchKv");
    },
    releaseKv: async () => ({ released: false }),
    async *watchTelemetry(request, options) {
      for (;;) {
        const power = { powerWatts: 0, energyJoulesTotal: 0, temperatureCelsius: 0 };
        yield { timestampUnixMs: Date.now(), ...idle, ...power, conditions: [] };
        await sleep(request.intervalMs || 1000, options?.signal);
      }
    },
    close: async () => {},
  };
}
