import { Code, OpalError } from "@opal/core";
import type { DeviceCapabilities } from "@opal/driver";
import type { MockProfile } from "./mock-profile";

const MIB = 1024 * 1024;

/** Limits of the simulated device; each documents its default. */
export interface MockDeviceLimits {
  /** Prefills computed at once; default 4. */
  readonly maxConcurrentPrefills?: number;
  /** Prefills waiting for a slot before DEVICE_BUSY; default 16. */
  readonly maxQueuedPrefills?: number;
  /** Longest prompt, in tokens; default 8,192. */
  readonly maxPromptTokens?: number;
  /** Chunk size when the caller does not ask, in bytes; default 1 MiB. */
  readonly preferredChunkBytes?: number;
  /** Largest chunk, in bytes; default 4 MiB. */
  readonly maxChunkBytes?: number;
  /** Longest retention lease, in seconds; default 600. */
  readonly maxRetentionSeconds?: number;
  /** Retention budget over all tenants, in bytes; default 1 GiB. */
  readonly maxRetainedBytes?: number;
  /**
   * Retained bytes one tenant may hold (`RT-20`); default a quarter of `maxRetainedBytes`, so one
   * tenant's leases cannot take the whole budget. A single-tenant deployment sets it to the budget.
   */
  readonly maxRetainedBytesPerTenant?: number;
  /** Retained caches (leases) one tenant may hold at once (`RT-20`); default 1,024. */
  readonly maxLeasesPerTenant?: number;
  /**
   * Models loaded at once (`MD-15`); default 64. A LoadModel of a new id beyond it fails
   * RESOURCE_EXHAUSTED `DEVICE_BUSY`, which also keeps ListModels far below the message limit.
   */
  readonly maxLoadedModels?: number;
}

/** The least value of each limit: a device needs a slot, a token, a byte; the rest may be 0. */
const LIMIT_MINIMUMS: Readonly<Record<keyof MockDeviceLimits, number>> = {
  maxConcurrentPrefills: 1,
  maxQueuedPrefills: 0,
  maxPromptTokens: 1,
  preferredChunkBytes: 1,
  maxChunkBytes: 1,
  maxRetentionSeconds: 0,
  maxRetainedBytes: 0,
  maxRetainedBytesPerTenant: 0,
  maxLeasesPerTenant: 0,
  maxLoadedModels: 1,
};

/** The per-tenant retention quotas of `limits` (`RT-20`), with their defaults. */
export function mockRetentionQuotas(limits: MockDeviceLimits): {
  readonly maxRetainedBytesPerTenant: number;
  readonly maxLeasesPerTenant: number;
} {
  const total = limits.maxRetainedBytes ?? 1024 * MIB;
  return {
    maxRetainedBytesPerTenant: limits.maxRetainedBytesPerTenant ?? Math.floor(total / 4),
    maxLeasesPerTenant: limits.maxLeasesPerTenant ?? 1024,
  };
}

/**
 * What the mock declares: every dtype, layout and scale scheme, resume, prefix cache, `limits`.
 * INVALID_ARGUMENT when a limit is not a whole number at least its minimum (1 for slots, prompt
 * tokens, chunk bytes and models; 0 for the rest), or `preferredChunkBytes` exceeds `maxChunkBytes`.
 */
export function mockCapabilities(
  limits: MockDeviceLimits,
  profile: MockProfile,
): DeviceCapabilities {
  for (const [name, value] of Object.entries(limits)) {
    const minimum = LIMIT_MINIMUMS[name as keyof MockDeviceLimits];
    if (minimum === undefined) {
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `limits.${name} is not a limit (expected one of ${Object.keys(LIMIT_MINIMUMS).join(", ")})`,
      );
    }
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= minimum)) {
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `limits.${name} must be a whole number >= ${minimum} (got ${JSON.stringify(value)})`,
      );
    }
  }
  const preferred = limits.preferredChunkBytes ?? MIB;
  const max = limits.maxChunkBytes ?? 4 * MIB;
  if (preferred > max) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `limits.preferredChunkBytes must be at most maxChunkBytes ${max} (got ${preferred})`,
    );
  }
  return {
    dtypes: ["f32", "f16", "bf16", "fp8_e4m3fn", "fp8_e5m2", "int8"],
    layouts: ["nhd", "hnd"],
    scaleSchemes: ["per_tensor", "per_token", "per_head"],
    blockSizesTokens: [16, 32, 64, 128, 256],
    maxPromptTokens: limits.maxPromptTokens ?? 8192,
    maxConcurrentPrefills: limits.maxConcurrentPrefills ?? 4,
    maxQueuedPrefills: limits.maxQueuedPrefills ?? 16,
    preferredChunkBytes: preferred,
    maxChunkBytes: max,
    maxMessageBytes: max + 64 * 1024,
    retention: {
      maxRetentionSeconds: limits.maxRetentionSeconds ?? 600,
      maxRetainedBytes: limits.maxRetainedBytes ?? 1024 * MIB,
    },
    features: {
      resume: true,
      push: false,
      prefixCache: true,
      decoderPrefix: true,
      seededSampling: true,
      compressionCodecs: [],
    },
    numerics: profile.numerics,
    dataPlanes: ["inline"],
    maxModelBytes: 2048 * MIB,
    transports: [],
  };
}
