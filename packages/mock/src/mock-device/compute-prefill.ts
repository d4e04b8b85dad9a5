import { randomBytes } from "node:crypto";
import type { PrefillRequest, PrefillStats, ValidatedPrefill } from "@opal/driver";
import { cacheByteLength, digestKvCache } from "@opal/kv";
import { createSeededSampler, sampleGreedy } from "@opal/reference";
import type { MockPrefillOutput } from "../mock-model";
import { simulatedTimeUs } from "../mock-profile";
import type { MockDeviceState } from "./mock-device-state";
import { mockPowerWatts } from "./mock-power-watts";
import type { PrefillPlan } from "./plan-prefill";

/** A computed prefill: its cache and first token, its handle and lease, and its cost. */
export interface ComputedPrefill {
  readonly output: MockPrefillOutput;
  readonly kvHandle: string;
  /** 0 when not retained. */
  readonly leaseExpiryUnixMs: number;
  /** Simulated device time, in µs (not rounded). */
  readonly deviceTimeUs: number;
  /** Power drawn while computing, in W. */
  readonly powerWatts: number;
  /** `powerWatts` × `deviceTimeUs`, in J. */
  readonly energyJoules: number;
  /** The `completed` statistics, but `timeToFirstChunkUs` (0 until the first chunk is sent). */
  readonly stats: PrefillStats;
}

/**
 * Computes a planned prefill with the model (seeded or greedy sampling, the profile's noise) and
 * prices it with the timing and power model: device time from the FLOPs of the tokens not found
 * in the prefix cache, throttled by the power cap; energy at {@link mockPowerWatts}. Throws the
 * signal's reason if it aborts during compute.
 */
export function computePrefill(
  state: MockDeviceState,
  plan: PrefillPlan,
  prefill: {
    readonly request: PrefillRequest;
    readonly valid: ValidatedPrefill;
    readonly queueTimeUs: number;
    readonly signal: AbortSignal;
  },
): ComputedPrefill {
  const { request, valid, signal } = prefill;
  const { model, descriptor, hitTokens } = plan;
  const { profile } = state;
  const tokens = request.promptTokenIds;
  const sampler =
    request.sampling?.mode === "seeded" ? createSeededSampler(request.sampling) : undefined;
  const output = model.prefill(
    tokens,
    descriptor,
    (l) => (sampler ? sampler.sample(l) : sampleGreedy(l)),
    signal,
    profile.noise,
  );
  const deviceTimeUs = simulatedTimeUs(
    profile,
    model.flops(tokens.length - hitTokens, hitTokens),
    state.faults.throttle(profile.activePowerWatts),
  );
  const powerWatts = mockPowerWatts(state);
  const energyJoules = (powerWatts * deviceTimeUs) / 1e6;
  const kvHandle = randomBytes(16).toString("base64url");
  const leaseExpiryUnixMs =
    valid.retentionSeconds > 0 ? state.now() + valid.retentionSeconds * 1000 : 0;
  const stats: PrefillStats = {
    promptTokens: tokens.length,
    prefixCacheHitTokens: hitTokens,
    decoderPrefixTokens: plan.decoderSkip,
    firstTokenId: output.firstTokenId,
    firstTokenLogprob: output.firstTokenLogprob,
    kvTotalBytes: cacheByteLength(descriptor),
    kvDigest: digestKvCache(output.cache),
    deviceTimeUs: Math.round(deviceTimeUs),
    queueTimeUs: prefill.queueTimeUs,
    energyJoules,
    leaseExpiryUnixMs,
    timeToFirstChunkUs: 0,
  };
  return { output, kvHandle, leaseExpiryUnixMs, deviceTimeUs, powerWatts, energyJoules, stats };
}
