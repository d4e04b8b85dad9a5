import { randomBytes } from "node:crypto";
import { Code, createCallSignal, OpalError, Reason, sleep, throwIfAborted } from "@opal/core";
import {
  type DeviceInfo,
  DRIVER_API_VERSION,
  type DriverCallOptions,
  type FetchEvent,
  type FetchKvRequest,
  type ModelInfo,
  type PrefillDriver,
  type PrefillEvent,
  type PrefillRequest,
  type PrefillStats,
  streamKvCache,
  type TelemetrySnapshot,
  validatePrefillRequest,
} from "@opal/driver";
import {
  cacheByteLength,
  computeOpalBlockHashes,
  createKvChunker,
  digestKvCache,
  type KvDescriptor,
  partsOf,
  toHex,
} from "@opal/kv";
import { createSeededSampler, sampleGreedy } from "@opal/reference";
import { decoderPrefixTokens } from "./decoder-prefix-tokens";
import { createDeviceSlots } from "./device-slots";
import { createFaultInjector, type FaultConfig, type FaultInjector } from "./fault-injector";
import { hashBody } from "./hash-prefill-body";
import { loadMockModel } from "./load-mock-model";
import { type MockDeviceLimits, mockCapabilities } from "./mock-capabilities";
import { createNamedMockModel, type MockModel } from "./mock-model";
import {
  type MockProfile,
  type MockProfileName,
  mockProfile,
  simulatedTimeUs,
} from "./mock-profile";
import { createPrefixCache } from "./prefix-cache";
import { resumePosition, sliceChunk } from "./resume-position";
import { createRetentionStore } from "./retention-store";
import { streamWithFaults } from "./stream-with-faults";

/** Options of {@link createMockDevice}; every field is optional. */
export interface MockDeviceOptions {
  /** Timing, power and numerics; a built-in name or a custom profile; default "instant". */
  readonly profile?: MockProfileName | MockProfile;
  /** Models loaded at start, by name (`opal-tiny`, `opal-small`, `llama-3-8b`, …); default none. */
  readonly models?: readonly string[];
  /** Faults to inject; default none. Change them at run time with `setFaults`. */
  readonly faults?: FaultConfig;
  readonly limits?: MockDeviceLimits;
  /** Device id reported by GetInfo; default a random id. */
  readonly deviceId?: string;
  /** Clock in ms since the Unix epoch (leases); default `Date.now`. */
  readonly now?: () => number;
  /**
   * Called by the `dropConnectionAfterChunks` fault to drop every connection (`serveMockDevice`
   * restarts its server); without it, the stream just fails with UNAVAILABLE.
   */
  readonly onConnectionDrop?: () => Promise<void>;
}

/** The simulated device: a {@link PrefillDriver} with run-time fault control and counters. */
export interface MockDevice extends PrefillDriver {
  readonly profile: MockProfile;
  /** Replaces the fault configuration (effective for the next calls). */
  setFaults(faults: FaultConfig): void;
  /** Counters since start. */
  readonly stats: {
    readonly prefillsStarted: number;
    readonly prefillsCompleted: number;
    readonly faultsInjected: number;
    readonly retainedKvBytes: number;
    readonly activePrefills: number;
  };
}

/** Creates an Iris-style mock prefill device (see docs/guides/mock.md). */
export function createMockDevice(options: MockDeviceOptions = {}): MockDevice {
  const profile =
    typeof options.profile === "object"
      ? options.profile
      : mockProfile(options.profile ?? "instant");
  const now = options.now ?? Date.now;
  const limits = options.limits ?? {};
  const capabilities = mockCapabilities(limits, profile);
  const info: DeviceInfo = {
    protocolVersion: "1.0.0",
    vendor: "OPAL",
    product: `Iris-style mock device (${profile.name})`,
    firmwareVersion: "mock-1",
    driverVersion: "0.1.0",
    deviceId: options.deviceId ?? `mock-${randomBytes(4).toString("hex")}`,
    extensions: [],
  };

  const models = new Map<string, MockModel>();
  for (const name of options.models ?? []) models.set(name, createNamedMockModel(name));
  let faults: FaultInjector = createFaultInjector(options.faults);
  const slots = createDeviceSlots(
    capabilities.maxConcurrentPrefills,
    capabilities.maxQueuedPrefills,
  );
  const store = createRetentionStore(capabilities.retention.maxRetainedBytes, now);
  const prefixCache = createPrefixCache(100_000);
  const requests = new Map<string, { bodyHash: string; handle: string; stats?: PrefillStats }>();
  const startedAtMs = now();
  let activeEnergyJoules = 0;
  let started = 0;
  let completed = 0;
  let closed = false;

  /** Common entry of every RPC: closed check, injected latency and errors, call signal. */
  async function enter(rpc: string, call: DriverCallOptions = {}) {
    if (closed)
      throw new OpalError(Code.UNAVAILABLE, "device is closed", { reason: Reason.SHUTTING_DOWN });
    const scope = createCallSignal(call);
    try {
      const latency = faults.latencyMs();
      if (latency > 0) await sleep(latency, scope.signal);
      const injected = faults.errorFor(rpc);
      if (injected) throw injected;
    } catch (error) {
      scope.dispose();
      throw error;
    }
    return { scope, tenant: call.tenant ?? "default" };
  }

  async function unary<T>(
    rpc: string,
    call: DriverCallOptions | undefined,
    run: (tenant: string) => T | Promise<T>,
  ) {
    const { scope, tenant } = await enter(rpc, call);
    try {
      return await run(tenant);
    } finally {
      scope.dispose();
    }
  }

  function tryGet(tenant: string, handle: string) {
    try {
      return store.get(tenant, handle);
    } catch {
      return undefined;
    }
  }

  function throttle(): number {
    return faults.throttle(profile.activePowerWatts);
  }

  async function* prefill(
    request: PrefillRequest,
    call?: DriverCallOptions,
  ): AsyncGenerator<PrefillEvent> {
    const { scope, tenant } = await enter("Prefill", call);
    const signal = scope.signal;
    const acceptedAt = performance.now();
    try {
      const model = models.get(request.modelId);
      const valid = validatePrefillRequest(request, { capabilities, model: model?.info });
      const tokens = request.promptTokenIds;
      const idKey = `${tenant}\0${request.requestId}`;
      const bodyHash = hashBody(request);
      const prior = requests.get(idKey);
      if (prior && prior.bodyHash !== bodyHash) {
        throw new OpalError(
          Code.ALREADY_EXISTS,
          `request_id ${JSON.stringify(request.requestId)} was used with a different request`,
          { reason: Reason.REQUEST_ID_CONFLICT },
        );
      }
      const retained = prior?.stats ? tryGet(tenant, prior.handle) : undefined;
      if (prior?.stats && retained) {
        // Same id, same body, cache still retained: the same result, from the retained cache (PF-7).
        yield* streamKvCache(retained.cache, {
          kvHandle: prior.handle,
          chunkBytes: valid.chunkBytes,
          signal,
          leaseExpiryUnixMs: retained.leaseExpiryUnixMs,
          stats: { ...prior.stats, queueTimeUs: 0 },
        });
        return;
      }
      const slot = await slots.acquire(signal);
      started++;
      try {
        const blockSize = request.kvFormat.blockSizeTokens;
        // PH-3: entries are keyed by tenant, model and the salted chain, so no hit crosses them.
        const hashes = computeOpalBlockHashes(tokens, {
          blockSizeTokens: blockSize,
          ...(request.cacheSalt ? { cacheSalt: request.cacheSalt } : {}),
        }).map((h) => `${tenant}\0${model!.info.fingerprint}\0${toHex(h)}`);
        const decoderSkip = decoderPrefixTokens(
          request,
          valid.decoderPrefixTokens,
          tokens,
          blockSize,
        );
        const hitTokens = Math.min(prefixCache.matchBlocks(hashes) * blockSize, tokens.length - 1);
        const descriptor: KvDescriptor = {
          modelFingerprint: model!.info.fingerprint,
          numLayers: model!.info.numLayers,
          attention: model!.info.attention,
          headRange: valid.headRange,
          dtype: request.kvFormat.dtype,
          scaleScheme: request.kvFormat.scaleScheme,
          layout: request.kvFormat.layout,
          tokenStart: decoderSkip,
          tokenCount: tokens.length - decoderSkip,
          blockSizeTokens: blockSize,
          numerics: profile.numerics,
        };
        throwIfAborted(signal);
        const sampler =
          request.sampling?.mode === "seeded" ? createSeededSampler(request.sampling) : undefined;
        const output = model!.prefill(
          tokens,
          descriptor,
          (l) => (sampler ? sampler.sample(l) : sampleGreedy(l)),
          signal,
        );
        const deviceTimeUs = simulatedTimeUs(
          profile,
          model!.flops(tokens.length - hitTokens, hitTokens),
          throttle(),
        );
        const energyJoules =
          (Math.min(profile.activePowerWatts, faults.config.powerCapWatts ?? Infinity) *
            deviceTimeUs) /
          1e6;
        const kvHandle = randomBytes(16).toString("base64url");
        const leaseExpiryUnixMs =
          valid.retentionSeconds > 0 ? now() + valid.retentionSeconds * 1000 : 0;
        const digest = digestKvCache(output.cache);
        const stats: PrefillStats = {
          promptTokens: tokens.length,
          prefixCacheHitTokens: hitTokens,
          decoderPrefixTokens: decoderSkip,
          firstTokenId: output.firstTokenId,
          firstTokenLogprob: output.firstTokenLogprob,
          kvTotalBytes: cacheByteLength(descriptor),
          kvDigest: digest,
          deviceTimeUs: Math.round(deviceTimeUs),
          queueTimeUs: slot.queueTimeUs,
          energyJoules,
          leaseExpiryUnixMs,
          timeToFirstChunkUs: 0,
        };
        if (valid.retentionSeconds > 0) {
          // Retained with its statistics: FetchKv returns them even if this stream breaks.
          store.retain(kvHandle, { tenant, cache: output.cache, digest, leaseExpiryUnixMs, stats });
        }
        requests.set(idKey, { bodyHash, handle: kvHandle, stats });
        if (requests.size > 10_000) requests.delete(requests.keys().next().value as string);
        yield {
          type: "accepted",
          kvHandle,
          descriptor,
          leaseExpiryUnixMs,
          queueTimeUs: slot.queueTimeUs,
        };

        let firstChunkUs = 0;
        yield* streamWithFaults(output.cache, {
          chunkBytes: valid.chunkBytes,
          layerTimeMs: deviceTimeUs / 1000 / descriptor.numLayers,
          faults,
          signal,
          ...(options.onConnectionDrop ? { onConnectionDrop: options.onConnectionDrop } : {}),
          onFirstChunk: () => {
            firstChunkUs = Math.round((performance.now() - acceptedAt) * 1000);
          },
        });
        prefixCache.insert(hashes);
        activeEnergyJoules += energyJoules;
        completed++;
        const final = { ...stats, timeToFirstChunkUs: firstChunkUs };
        requests.set(idKey, { bodyHash, handle: kvHandle, stats: final });
        yield { type: "completed", stats: final };
      } finally {
        slot.release();
      }
    } finally {
      scope.dispose();
    }
  }

  async function* fetchKv(
    request: FetchKvRequest,
    call?: DriverCallOptions,
  ): AsyncGenerator<FetchEvent> {
    const { scope, tenant } = await enter("FetchKv", call);
    try {
      const entry = store.get(tenant, request.kvHandle);
      const descriptor = entry.cache.descriptor;
      const chunkBytes = request.maxChunkBytes || capabilities.preferredChunkBytes;
      if (chunkBytes > capabilities.maxChunkBytes) {
        throw new OpalError(
          Code.INVALID_ARGUMENT,
          `max_chunk_bytes: expected 1..${capabilities.maxChunkBytes}, got ${chunkBytes}`,
          {
            reason: Reason.INVALID_FIELD,
            fieldViolations: [
              {
                field: "max_chunk_bytes",
                description: `expected 1..${capabilities.maxChunkBytes}`,
              },
            ],
          },
        );
      }
      const start = resumePosition(descriptor, request.resumeFrom);
      yield { type: "accepted", descriptor, leaseExpiryUnixMs: entry.leaseExpiryUnixMs };
      const chunker = createKvChunker(descriptor, { maxChunkBytes: chunkBytes });
      const parts = partsOf(descriptor);
      for (let layer = start.layer; layer < descriptor.numLayers; layer++) {
        for (const [index, part] of parts.entries()) {
          if (layer === start.layer && index < start.partIndex) continue;
          const data = entry.cache.part(layer, part);
          const from = layer === start.layer && index === start.partIndex ? start.offsetBytes : 0;
          for (const chunk of chunker.chunkPart(layer, part, data)) {
            if (chunk.offsetBytes + chunk.data.byteLength <= from) continue;
            throwIfAborted(scope.signal);
            yield {
              type: "chunk",
              chunk: chunk.offsetBytes >= from ? chunk : sliceChunk(chunk, from),
            };
          }
        }
      }
      yield {
        type: "completed",
        kvTotalBytes: cacheByteLength(descriptor),
        kvDigest: entry.digest,
        ...(entry.stats ? { prefill: entry.stats } : {}),
      };
    } finally {
      scope.dispose();
    }
  }

  async function* watchTelemetry(
    request: { intervalMs?: number },
    call?: DriverCallOptions,
  ): AsyncGenerator<TelemetrySnapshot> {
    const { scope } = await enter("WatchTelemetry", call);
    try {
      const interval = Math.max(50, request.intervalMs || 1000);
      for (;;) {
        yield snapshot();
        await sleep(interval, scope.signal);
      }
    } finally {
      scope.dispose();
    }
  }

  function snapshot(): TelemetrySnapshot {
    const utilization = slots.active / capabilities.maxConcurrentPrefills;
    const cap = faults.config.powerCapWatts;
    const active = Math.min(profile.activePowerWatts, cap ?? Infinity);
    const powerWatts = profile.idlePowerWatts + (active - profile.idlePowerWatts) * utilization;
    const idleJoules = (profile.idlePowerWatts * (now() - startedAtMs)) / 1000;
    return {
      timestampUnixMs: now(),
      utilization,
      queueDepth: slots.queued,
      activePrefills: slots.active,
      retainedKvBytes: store.byteLength,
      powerWatts,
      energyJoulesTotal: idleJoules + activeEnergyJoules,
      temperatureCelsius: 35 + 40 * utilization,
      conditions: faults.conditions(profile.activePowerWatts),
    };
  }

  return {
    driverApiVersion: DRIVER_API_VERSION,
    profile,
    get stats() {
      return {
        prefillsStarted: started,
        prefillsCompleted: completed,
        faultsInjected: faults.injected,
        retainedKvBytes: store.byteLength,
        activePrefills: slots.active,
      };
    },
    setFaults(config) {
      faults = createFaultInjector(config);
    },
    getInfo: (call) => unary("GetInfo", call, () => info),
    getCapabilities: (call) => unary("GetCapabilities", call, () => capabilities),
    probe: (call) => unary("Probe", call, () => "ready" as const),
    listModels: (call) =>
      unary("ListModels", call, (): ModelInfo[] => [...models.values()].map((m) => m.info)),
    loadModel: (request, call) => unary("LoadModel", call, () => loadMockModel(models, request)),
    unloadModel: (modelId, call) =>
      unary("UnloadModel", call, () => ({ wasLoaded: models.delete(modelId) })),
    prefill,
    fetchKv,
    releaseKv: (kvHandle, call) =>
      unary("ReleaseKv", call, (tenant) => ({ released: store.release(tenant, kvHandle) })),
    watchTelemetry,
    async close() {
      closed = true;
    },
  };
}
