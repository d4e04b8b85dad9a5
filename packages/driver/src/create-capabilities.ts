import type { DeviceCapabilities } from "./gen/messages";

const MIB = 1024 * 1024;

/**
 * Capabilities with conservative defaults for everything not given: bf16 NHD KV with block size
 * 16, 8,192 prompt tokens, 1 prefill at a time and 16 queued, 1 MiB chunks (4 MiB max), no
 * retention, no optional features, the inline data plane only, no model uploads, and bit-exact
 * reference numerics. Vendors override what their device does.
 */
export function createCapabilities(
  overrides: Partial<DeviceCapabilities> = {},
): DeviceCapabilities {
  const maxChunkBytes = overrides.maxChunkBytes ?? 4 * MIB;
  return {
    dtypes: ["bf16"],
    layouts: ["nhd"],
    scaleSchemes: [],
    blockSizesTokens: [16],
    maxPromptTokens: 8192,
    maxConcurrentPrefills: 1,
    maxQueuedPrefills: 16,
    preferredChunkBytes: Math.min(MIB, maxChunkBytes),
    maxChunkBytes,
    maxMessageBytes: maxChunkBytes + 64 * 1024,
    retention: { maxRetentionSeconds: 0, maxRetainedBytes: 0 },
    features: {
      resume: false,
      push: false,
      prefixCache: false,
      decoderPrefix: false,
      seededSampling: false,
      compressionCodecs: [],
    },
    numerics: {
      deviceKind: "reference",
      precisionPath: "exact reference",
      bitExact: true,
      maxAbsError: 0,
      maxRelError: 0,
    },
    dataPlanes: ["inline"],
    maxModelBytes: 0,
    transports: [],
    ...overrides,
  };
}
