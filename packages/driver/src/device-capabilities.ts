import type { KvDtype, KvLayout, KvNumerics, KvScaleScheme } from "@opal/kv";

/** Planes that can carry KV bytes; "inline" (chunks on the gRPC stream) is always supported. */
export type DataPlaneKind = "inline" | "shared_memory" | "transport";

/** Optional features; a caller never uses one the device does not declare. */
export interface DeviceFeatures {
  /** `fetchKv` with a resume position. */
  readonly resume: boolean;
  /** Prefill with a push target. */
  readonly push: boolean;
  /** A prefix cache keyed by the block-hash chain and cache salt. */
  readonly prefixCache: boolean;
  /** Skipping tokens the decoder holds (`decoderPrefix`). */
  readonly decoderPrefix: boolean;
  /** Seeded sampling of the first token (greedy is always supported). */
  readonly seededSampling: boolean;
  /** Compression codecs of chunk data (none defined in protocol 1.0). */
  readonly compressionCodecs: readonly string[];
}

/** Limits on caches kept after their prefill; all zero when retention is unsupported. */
export interface RetentionLimits {
  readonly maxRetentionSeconds: number;
  readonly maxRetainedBytes: number;
}

/** What a device supports (`GetCapabilities`); stable for one device and firmware version. */
export interface DeviceCapabilities {
  readonly dtypes: readonly KvDtype[];
  readonly layouts: readonly KvLayout[];
  /** Scale schemes for quantised dtypes; "none" is always implied. */
  readonly scaleSchemes: readonly KvScaleScheme[];
  readonly blockSizesTokens: readonly number[];
  readonly maxPromptTokens: number;
  readonly maxConcurrentPrefills: number;
  /** Prefills that may wait for a slot before DEVICE_BUSY. */
  readonly maxQueuedPrefills: number;
  /** Chunk size used when the caller does not ask, in bytes. */
  readonly preferredChunkBytes: number;
  /** Largest chunk data produced or accepted, in bytes. */
  readonly maxChunkBytes: number;
  /** Largest message sent or accepted, in bytes. */
  readonly maxMessageBytes: number;
  readonly retention: RetentionLimits;
  readonly features: DeviceFeatures;
  /** How the device computes and its declared error bound; copied into every descriptor. */
  readonly numerics: KvNumerics;
  readonly dataPlanes: readonly DataPlaneKind[];
  /** Largest weights accepted by `loadModel`, in bytes; 0 when uploads are unsupported. */
  readonly maxModelBytes: number;
  /** Transport kinds accepted when "transport" is a data plane. */
  readonly transports: readonly string[];
}
