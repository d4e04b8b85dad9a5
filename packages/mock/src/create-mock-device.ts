import { randomBytes } from "node:crypto";
import {
  Code,
  createCallSignal,
  invalidField,
  OpalError,
  Reason,
  sleep,
  throwIfAborted,
} from "@opal/core";
import {
  createDeviceSlots,
  type DeviceInfo,
  DRIVER_API_VERSION,
  type DriverCallOptions,
  type FetchEvent,
  type FetchKvRequest,
  type ModelInfo,
  PROTOCOL_VERSION,
  type PrefillEvent,
  type PrefillRequest,
  type PrefillStats,
  prefillBodyDigest,
  streamKvCache,
  type TelemetrySnapshot,
  telemetryIntervalMs,
  validatePrefillRequest,
} from "@opal/driver";
import {
  cacheByteLength,
  computeOpalBlockHashes,
  digestKvCache,
  type KvDescriptor,
  toHex,
} from "@opal/kv";
import { createSeededSampler, sampleGreedy } from "@opal/reference";
import { decoderPrefixTokens } from "./decoder-prefix-tokens";
import type { FaultConfig } from "./fault-config";
import { createFaultInjector, type FaultInjector } from "./fault-injector";
import { loadMockModel } from "./load-mock-model";
import { mockCapabilities, mockRetentionQuotas } from "./mock-capabilities";
import type { MockDevice, MockDeviceOptions } from "./mock-device";
import { createNamedMockModel, type MockModel } from "./mock-model";
import { mockProfile, simulatedTimeUs } from "./mock-profile";
import { createPrefixCache } from "./prefix-cache";
import { createRetentionStore } from "./retention-store";
import { streamRetainedKv } from "./stream-retained-kv";
import { streamWithFaults } from "./stream-with-faults";

/**
 * Creates an Iris-style mock prefill device (see docs/guides/mock.md). INVALID_ARGUMENT for an
 * unknown profile or model, invalid limits or an invalid fault configuration.
 *
 * Power and energy: a prefill draws the profile's active power, limited by `powerCapWatts` but
 * never below idle power; its `energyJoules` is that power × its device time. Telemetry reports
 * idle power plus that draw's excess over idle × utilization, and an energy total of idle power ×
 * wall time plus every prefill's energy: all of it once completed, and for a prefill that ends
 * early (fault, cancellation, deadline), the device time it ran until then.
 */
export function createMockDevice(options: MockDeviceOptions = {}): MockDevice {
  const profile =
    typeof options.profile === "object"
      ? options.profile
      : mockProfile(options.profile ?? "instant");
  const now = options.now ?? Date.now;
  const limits = options.limits ?? {};
  const capabilities = mockCapabilities(limits, profile);
  const info: DeviceInfo = {
    protocolVersion: PROTOCOL_VERSION,
    vendor: "OPAL",
    product: `Iris-style mock device (${profile.name})`,
    firmwareVersion: "mock-1",
    driverVersion: "0.1.0",
    deviceId: options.deviceId ?? `mock-${randomBytes(4).toString("hex")}`,
    extensions: [],
  };

  const models = new Map<string, MockModel>();
  for (const name of options.models ?? []) models.set(name, createNamedMockModel(name));
  let faultsInjected = 0;
  const injectorOf = (config: FaultConfig | undefined) =>
    createFaultInjector(config, { onInjected: () => faultsInjected++ });
  let faults: FaultInjector = injectorOf(options.faults);
  const slots = createDeviceSlots(
    capabilities.maxConcurrentPrefills,
    capabilities.maxQueuedPrefills,
  );
  const maxModels = limits.maxLoadedModels ?? 64;
  const quotas = mockRetentionQuotas(limits);
  const store = createRetentionStore(
    {
      maxBytes: capabilities.retention.maxRetainedBytes,
      maxBytesPerTenant: quotas.maxRetainedBytesPerTenant,
      maxLeasesPerTenant: quotas.maxLeasesPerTenant,
    },
    now,
  );
  const prefixCache = createPrefixCache(100_000);
  const requests = new Map<string, { bodyHash: string; handle: string; stats?: PrefillStats }>();
  const startedAtMs = now();
  let activeEnergyJoules = 0;
  let started = 0;
  let completed = 0;
  let closed = false;
  const closedError = () =>
    new OpalError(Code.UNAVAILABLE, "device is closed", { reason: Reason.SHUTTING_DOWN });
  /** Calls in progress: `close()` aborts them. */
  const calls = new Set<AbortController>();

  /** The signal of one call: the caller's signal, its deadline and `close()`. */
  function openCall(call: DriverCallOptions) {
    const own = new AbortController();
    // First, as it throws for a bad timeout: nothing is registered yet.
    const scope = createCallSignal({
      signal: own.signal,
      ...(call.timeoutMs !== undefined ? { timeoutMs: call.timeoutMs } : {}),
    });
    const forward = () => own.abort(call.signal?.reason);
    if (call.signal?.aborted) forward();
    else call.signal?.addEventListener("abort", forward, { once: true });
    calls.add(own);
    return {
      signal: scope.signal,
      dispose() {
        calls.delete(own);
        call.signal?.removeEventListener("abort", forward);
        scope.dispose();
      },
    };
  }

  /** Common entry of every RPC: closed check, injected latency and errors, call signal. */
  async function enter(rpc: string, call: DriverCallOptions = {}) {
    if (closed) throw closedError();
    const scope = openCall(call);
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

  /**
   * Power drawn while computing, in W: the profile's active power, limited by the power cap, and
   * never below idle power (a cap below idle throttles compute but cannot lower the draw further).
   */
  function computePowerWatts(): number {
    const cap = faults.config.powerCapWatts ?? Infinity;
    return Math.max(profile.idlePowerWatts, Math.min(profile.activePowerWatts, cap));
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
      const bodyHash = call?.bodyDigest ?? prefillBodyDigest(request);
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
        // MD-17: a prefill that waited for its slot while its model was unloaded fails.
        if (models.get(request.modelId) !== model) {
          throw new OpalError(
            Code.FAILED_PRECONDITION,
            `model ${JSON.stringify(request.modelId)} was unloaded while the prefill waited`,
            { reason: Reason.MODEL_NOT_LOADED },
          );
        }
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
        // PF-1 stage 6: a cache that would not fit beside the leased ones is refused before any
        // work; leased caches are never evicted for it (RT-1, RT-4).
        if (valid.retentionSeconds > 0) store.assertFits(tenant, cacheByteLength(descriptor));
        const sampler =
          request.sampling?.mode === "seeded" ? createSeededSampler(request.sampling) : undefined;
        const output = model!.prefill(
          tokens,
          descriptor,
          (l) => (sampler ? sampler.sample(l) : sampleGreedy(l)),
          signal,
          profile.noise,
        );
        const deviceTimeUs = simulatedTimeUs(
          profile,
          model!.flops(tokens.length - hitTokens, hitTokens),
          throttle(),
        );
        const powerWatts = computePowerWatts();
        const energyJoules = (powerWatts * deviceTimeUs) / 1e6;
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
        // Simulated compute runs from acceptance; whatever ends the prefill, telemetry is charged
        // for the device time it ran (all of it once completed).
        const computeStartedMs = performance.now();
        let charged = false;
        try {
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
          charged = true;
          completed++;
          const final = { ...stats, timeToFirstChunkUs: firstChunkUs };
          requests.set(idKey, { bodyHash, handle: kvHandle, stats: final });
          yield { type: "completed", stats: final };
        } finally {
          if (!charged) {
            const ranUs = Math.min(deviceTimeUs, (performance.now() - computeStartedMs) * 1000);
            activeEnergyJoules += (powerWatts * ranUs) / 1e6;
          }
        }
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
      // RT-11's order: the handle's own check, then a device without retention.
      if (!request.kvHandle || request.kvHandle.length > 128)
        throw invalidField("kv_handle", "expected 1-128 characters");
      if (capabilities.retention.maxRetentionSeconds === 0)
        throw new OpalError(Code.UNIMPLEMENTED, "kv_handle: this device retains no caches", {
          reason: Reason.UNSUPPORTED_FEATURE,
          fieldViolations: [{ field: "kv_handle", description: "max_retention_seconds = 0" }],
        });
      const entry = store.get(tenant, request.kvHandle);
      yield* streamRetainedKv(entry, { request, capabilities, signal: scope.signal });
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
      const interval = telemetryIntervalMs(request.intervalMs);
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
    const powerWatts =
      profile.idlePowerWatts + (computePowerWatts() - profile.idlePowerWatts) * utilization;
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
    // The mock admits prefills itself: its telemetry reports its slots and queue.
    queuesPrefills: true,
    profile,
    get stats() {
      return {
        prefillsStarted: started,
        prefillsCompleted: completed,
        faultsInjected,
        retainedKvBytes: store.byteLength,
        activePrefills: slots.active,
      };
    },
    setFaults(config) {
      faults = injectorOf(config);
    },
    getInfo: (call) => unary("GetInfo", call, () => info),
    getCapabilities: (call) => unary("GetCapabilities", call, () => capabilities),
    probe: (call) => unary("Probe", call, () => "ready" as const),
    listModels: (call) =>
      unary("ListModels", call, (): ModelInfo[] => [...models.values()].map((m) => m.info)),
    loadModel: (request, call) =>
      unary("LoadModel", call, () => loadMockModel(models, request, maxModels)),
    unloadModel: (modelId, call) =>
      unary("UnloadModel", call, () => {
        const model = models.get(modelId);
        models.delete(modelId);
        // MD-18: its prefix-cache entries go, unless another loaded id has the same weights.
        const fingerprint = model?.info.fingerprint;
        if (fingerprint && ![...models.values()].some((m) => m.info.fingerprint === fingerprint))
          prefixCache.dropModel(fingerprint);
        return { wasLoaded: model !== undefined };
      }),
    prefill,
    fetchKv,
    releaseKv: (kvHandle, call) =>
      unary("ReleaseKv", call, (tenant) => ({ released: store.release(tenant, kvHandle) })),
    watchTelemetry,
    async close() {
      closed = true;
      for (const call of calls) call.abort(closedError());
      store.clear();
    },
  };
}
