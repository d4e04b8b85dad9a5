import { opal } from "@opal/protocol";

const v1 = opal.device.v1;

function names(table: object, values: readonly number[] | null | undefined): string[] {
  return (values ?? []).map((n) => (table as Record<number, string>)[n] ?? `UNKNOWN_${n}`);
}

/** `GetInfo` as plain JSON. */
export function toInfoJson(info: opal.device.v1.IGetInfoResponse): Record<string, unknown> {
  return {
    protocolVersion: info.protocolVersion ?? "",
    vendor: info.vendor ?? "",
    product: info.product ?? "",
    firmwareVersion: info.firmwareVersion ?? "",
    driverVersion: info.driverVersion ?? "",
    deviceId: info.deviceId ?? "",
    extensions: [...(info.extensions ?? [])],
  };
}

/** `Capabilities` as plain JSON, enums by name. */
export function toCapabilitiesJson(c: opal.device.v1.ICapabilities): Record<string, unknown> {
  const f = c.features ?? {};
  const n = c.numerics ?? {};
  return {
    dtypes: names(v1.KvDtype, c.dtypes),
    layouts: names(v1.KvLayout, c.layouts),
    scaleSchemes: names(v1.KvScaleScheme, c.scaleSchemes),
    blockSizesTokens: [...(c.blockSizesTokens ?? [])],
    maxPromptTokens: c.maxPromptTokens ?? 0,
    maxConcurrentPrefills: c.maxConcurrentPrefills ?? 0,
    maxQueuedPrefills: c.maxQueuedPrefills ?? 0,
    preferredChunkBytes: c.preferredChunkBytes ?? 0,
    maxChunkBytes: c.maxChunkBytes ?? 0,
    maxMessageBytes: c.maxMessageBytes ?? 0,
    retention: {
      maxRetentionSeconds: c.retention?.maxRetentionSeconds ?? 0,
      maxRetainedBytes: Number(c.retention?.maxRetainedBytes ?? 0),
    },
    features: {
      resume: !!f.resume,
      push: !!f.push,
      prefixCache: !!f.prefixCache,
      decoderPrefix: !!f.decoderPrefix,
      seededSampling: !!f.seededSampling,
      compressionCodecs: [...(f.compressionCodecs ?? [])],
    },
    numerics: {
      deviceKind: names(v1.DeviceKind, [n.deviceKind ?? 0])[0],
      precisionPath: n.precisionPath ?? "",
      bitExact: !!n.bitExact,
      maxAbsError: n.maxAbsError ?? 0,
      maxRelError: n.maxRelError ?? 0,
    },
    dataPlanes: names(v1.DataPlaneKind, c.dataPlanes),
    maxModelBytes: Number(c.maxModelBytes ?? 0),
    transports: [...(c.transports ?? [])],
  };
}
