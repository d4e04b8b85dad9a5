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
}

/** What the mock declares: every dtype, layout and scale scheme, resume, prefix cache, `limits`. */
export function mockCapabilities(
  limits: MockDeviceLimits,
  profile: MockProfile,
): DeviceCapabilities {
  return {
    dtypes: ["f32", "f16", "bf16", "fp8_e4m3fn", "fp8_e5m2", "int8"],
    layouts: ["nhd", "hnd"],
    scaleSchemes: ["per_tensor", "per_token", "per_head"],
    blockSizesTokens: [16, 32, 64, 128, 256],
    maxPromptTokens: limits.maxPromptTokens ?? 8192,
    maxConcurrentPrefills: limits.maxConcurrentPrefills ?? 4,
    maxQueuedPrefills: limits.maxQueuedPrefills ?? 16,
    preferredChunkBytes: limits.preferredChunkBytes ?? MIB,
    maxChunkBytes: limits.maxChunkBytes ?? 4 * MIB,
    maxMessageBytes: (limits.maxChunkBytes ?? 4 * MIB) + 64 * 1024,
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
