import type {
  DeviceCapabilities,
  DeviceInfo,
  LoadModelResult,
  ModelInfo,
  TelemetrySnapshot,
} from "@opal/driver";
import type { KvAttention } from "@opal/kv";
import type { opal } from "./gen/pb.js";
import {
  dataPlaneEnum,
  deviceKindEnum,
  dtypeEnum,
  layoutEnum,
  scaleSchemeEnum,
  severityEnum,
} from "./wire-enums";

type P<T extends keyof typeof opal.device.v1> = (typeof opal.device.v1)[T] extends {
  prototype: infer I;
}
  ? { [K in keyof I]?: I[K] | null }
  : never;

/** Device identity as `GetInfoResponse`. */
export function toWireInfo(info: DeviceInfo): opal.device.v1.GetInfoResponse.$Properties {
  return { ...info, extensions: [...info.extensions] };
}

/** `GetInfoResponse` as device identity. */
export function fromWireInfo(w: P<"GetInfoResponse">): DeviceInfo {
  return {
    protocolVersion: w.protocolVersion ?? "",
    vendor: w.vendor ?? "",
    product: w.product ?? "",
    firmwareVersion: w.firmwareVersion ?? "",
    driverVersion: w.driverVersion ?? "",
    deviceId: w.deviceId ?? "",
    extensions: [...(w.extensions ?? [])],
  };
}

/** Capabilities as their wire message. */
export function toWireCapabilities(c: DeviceCapabilities): opal.device.v1.Capabilities.$Properties {
  return {
    dtypes: c.dtypes.map(dtypeEnum.toWire),
    layouts: c.layouts.map(layoutEnum.toWire),
    scaleSchemes: c.scaleSchemes.map(scaleSchemeEnum.toWire),
    blockSizesTokens: [...c.blockSizesTokens],
    maxPromptTokens: c.maxPromptTokens,
    maxConcurrentPrefills: c.maxConcurrentPrefills,
    maxQueuedPrefills: c.maxQueuedPrefills,
    preferredChunkBytes: c.preferredChunkBytes,
    maxChunkBytes: c.maxChunkBytes,
    maxMessageBytes: c.maxMessageBytes,
    retention: { ...c.retention },
    features: { ...c.features, compressionCodecs: [...c.features.compressionCodecs] },
    numerics: { ...c.numerics, deviceKind: deviceKindEnum.toWire(c.numerics.deviceKind) },
    dataPlanes: c.dataPlanes.map(dataPlaneEnum.toWire),
    maxModelBytes: c.maxModelBytes,
    transports: [...c.transports],
  };
}

/** Wire capabilities as domain capabilities; unknown enum values are dropped (newer devices). */
export function fromWireCapabilities(w: P<"Capabilities">): DeviceCapabilities {
  const known = <T>(
    values: readonly number[] | null | undefined,
    map: { fromWire(v: number, f: string): T },
  ) =>
    (values ?? []).flatMap((value) => {
      try {
        return [map.fromWire(value, "capabilities")];
      } catch {
        return [];
      }
    });
  const features = w.features ?? {};
  const numerics = w.numerics ?? {};
  return {
    dtypes: known(w.dtypes, dtypeEnum),
    layouts: known(w.layouts, layoutEnum),
    scaleSchemes: known(w.scaleSchemes, scaleSchemeEnum),
    blockSizesTokens: [...(w.blockSizesTokens ?? [])],
    maxPromptTokens: w.maxPromptTokens ?? 0,
    maxConcurrentPrefills: w.maxConcurrentPrefills ?? 0,
    maxQueuedPrefills: w.maxQueuedPrefills ?? 0,
    preferredChunkBytes: w.preferredChunkBytes ?? 0,
    maxChunkBytes: w.maxChunkBytes ?? 0,
    maxMessageBytes: w.maxMessageBytes ?? 0,
    retention: {
      maxRetentionSeconds: w.retention?.maxRetentionSeconds ?? 0,
      maxRetainedBytes: Number(w.retention?.maxRetainedBytes ?? 0),
    },
    features: {
      resume: features.resume ?? false,
      push: features.push ?? false,
      prefixCache: features.prefixCache ?? false,
      decoderPrefix: features.decoderPrefix ?? false,
      seededSampling: features.seededSampling ?? false,
      compressionCodecs: [...(features.compressionCodecs ?? [])],
    },
    numerics: {
      deviceKind: numerics.deviceKind
        ? deviceKindEnum.fromWire(numerics.deviceKind, "capabilities.numerics.device_kind")
        : "digital",
      precisionPath: numerics.precisionPath ?? "",
      bitExact: numerics.bitExact ?? false,
      maxAbsError: numerics.maxAbsError ?? 0,
      maxRelError: numerics.maxRelError ?? 0,
    },
    dataPlanes: known(w.dataPlanes, dataPlaneEnum),
    maxModelBytes: Number(w.maxModelBytes ?? 0),
    transports: [...(w.transports ?? [])],
  };
}

/** A model as `ModelInfo`. */
export function toWireModel(m: ModelInfo): opal.device.v1.ModelInfo.$Properties {
  return {
    modelId: m.modelId,
    fingerprint: m.fingerprint,
    architecture: m.architecture,
    numLayers: m.numLayers,
    ...(m.attention.kind === "mha"
      ? { mha: { numKvHeads: m.attention.numKvHeads, headDim: m.attention.headDim } }
      : { mla: { latentDim: m.attention.latentDim, ropeDim: m.attention.ropeDim } }),
    vocabSize: m.vocabSize,
    maxPositionEmbeddings: m.maxPositionEmbeddings,
  };
}

/** `ModelInfo` as a domain model. */
export function fromWireModel(w: P<"ModelInfo">): ModelInfo {
  const attention: KvAttention = w.mla
    ? { kind: "mla", latentDim: w.mla.latentDim ?? 0, ropeDim: w.mla.ropeDim ?? 0 }
    : { kind: "mha", numKvHeads: w.mha?.numKvHeads ?? 0, headDim: w.mha?.headDim ?? 0 };
  return {
    modelId: w.modelId ?? "",
    fingerprint: w.fingerprint ?? "",
    architecture: w.architecture ?? "",
    numLayers: w.numLayers ?? 0,
    attention,
    vocabSize: w.vocabSize ?? 0,
    maxPositionEmbeddings: w.maxPositionEmbeddings ?? 0,
  };
}

/** A load result as `LoadModelResponse`. */
export function toWireLoadResult(r: LoadModelResult): opal.device.v1.LoadModelResponse.$Properties {
  return { model: toWireModel(r.model), alreadyLoaded: r.alreadyLoaded };
}

/** A telemetry snapshot as its wire message. */
export function toWireTelemetry(
  s: TelemetrySnapshot,
): opal.device.v1.TelemetrySnapshot.$Properties {
  return {
    ...s,
    conditions: s.conditions.map((c) => ({ ...c, severity: severityEnum.toWire(c.severity) })),
  };
}

/** A wire telemetry snapshot as a domain snapshot. */
export function fromWireTelemetry(w: P<"TelemetrySnapshot">): TelemetrySnapshot {
  return {
    timestampUnixMs: Number(w.timestampUnixMs ?? 0),
    utilization: w.utilization ?? 0,
    queueDepth: w.queueDepth ?? 0,
    activePrefills: w.activePrefills ?? 0,
    retainedKvBytes: Number(w.retainedKvBytes ?? 0),
    powerWatts: w.powerWatts ?? 0,
    energyJoulesTotal: w.energyJoulesTotal ?? 0,
    temperatureCelsius: w.temperatureCelsius ?? 0,
    conditions: (w.conditions ?? []).map((c) => ({
      name: c.name ?? "",
      severity: c.severity ? severityEnum.fromWire(c.severity, "conditions.severity") : "info",
      message: c.message ?? "",
    })),
  };
}
