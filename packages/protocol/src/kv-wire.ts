import { Code, invalidField, OpalError, Reason } from "@opal/core";
import type { KvPosition } from "@opal/driver";
import { cacheByteLength, type KvChunk, type KvDescriptor } from "@opal/kv";
import type { opal } from "./gen/pb.js";
import { deviceKindEnum, dtypeEnum, layoutEnum, partEnum, scaleSchemeEnum } from "./wire-enums";

type Wire = typeof opal.device.v1;
type WireDescriptor = InstanceType<Wire["KvDescriptor"]>;
type WireChunk = InstanceType<Wire["KvChunk"]>;

/** A domain descriptor as its `opal.device.v1.KvDescriptor` message (with `total_bytes`). */
export function toWireDescriptor(d: KvDescriptor): opal.device.v1.KvDescriptor.$Properties {
  return {
    modelFingerprint: d.modelFingerprint,
    numLayers: d.numLayers,
    ...(d.attention.kind === "mha"
      ? { mha: { numKvHeads: d.attention.numKvHeads, headDim: d.attention.headDim } }
      : { mla: { latentDim: d.attention.latentDim, ropeDim: d.attention.ropeDim } }),
    headRange: { start: d.headRange.start, count: d.headRange.count },
    dtype: dtypeEnum.toWire(d.dtype),
    scaleScheme: scaleSchemeEnum.toWire(d.scaleScheme),
    layout: layoutEnum.toWire(d.layout),
    tokenStart: d.tokenStart,
    tokenCount: d.tokenCount,
    blockSizeTokens: d.blockSizeTokens,
    numerics: {
      deviceKind: deviceKindEnum.toWire(d.numerics.deviceKind),
      precisionPath: d.numerics.precisionPath,
      bitExact: d.numerics.bitExact,
      maxAbsError: d.numerics.maxAbsError,
      maxRelError: d.numerics.maxRelError,
    },
    totalBytes: cacheByteLength(d),
  };
}

/**
 * A wire descriptor as a domain descriptor. Throws INVALID_ARGUMENT naming the field for a missing
 * attention shape, an UNSPECIFIED enum, or a `total_bytes` that disagrees with the shape.
 */
export function fromWireDescriptor(
  w: WireDescriptor | opal.device.v1.KvDescriptor.$Properties,
  field = "descriptor",
): KvDescriptor {
  const attention = w.mha
    ? ({ kind: "mha", numKvHeads: w.mha.numKvHeads ?? 0, headDim: w.mha.headDim ?? 0 } as const)
    : w.mla
      ? ({ kind: "mla", latentDim: w.mla.latentDim ?? 0, ropeDim: w.mla.ropeDim ?? 0 } as const)
      : undefined;
  if (!attention) throw missing(`${field}.attention`);
  if (!w.numerics) throw missing(`${field}.numerics`);
  const descriptor: KvDescriptor = {
    modelFingerprint: w.modelFingerprint ?? "",
    numLayers: w.numLayers ?? 0,
    attention,
    headRange: { start: w.headRange?.start ?? 0, count: w.headRange?.count ?? 0 },
    dtype: dtypeEnum.fromWire(w.dtype, `${field}.dtype`),
    scaleScheme: scaleSchemeEnum.fromWire(w.scaleScheme, `${field}.scale_scheme`),
    layout: layoutEnum.fromWire(w.layout, `${field}.layout`),
    tokenStart: Number(w.tokenStart ?? 0),
    tokenCount: Number(w.tokenCount ?? 0),
    blockSizeTokens: w.blockSizeTokens ?? 0,
    numerics: {
      deviceKind: deviceKindEnum.fromWire(w.numerics.deviceKind, `${field}.numerics.device_kind`),
      precisionPath: w.numerics.precisionPath ?? "",
      bitExact: w.numerics.bitExact ?? false,
      maxAbsError: w.numerics.maxAbsError ?? 0,
      maxRelError: w.numerics.maxRelError ?? 0,
    },
  };
  const expected = cacheByteLength(descriptor);
  if (w.totalBytes && Number(w.totalBytes) !== expected) {
    const description = `expected ${expected} (from the shape), got ${w.totalBytes}`;
    throw new OpalError(Code.INVALID_ARGUMENT, `${field}.total_bytes: ${description}`, {
      reason: Reason.INVALID_FIELD,
      fieldViolations: [{ field: `${field}.total_bytes`, description }],
    });
  }
  return descriptor;
}

/** A domain chunk as its wire message; `data` is passed by reference (no copy). */
export function toWireChunk(chunk: KvChunk): opal.device.v1.KvChunk.$Properties {
  return {
    layer: chunk.layer,
    part: partEnum.toWire(chunk.part),
    offsetBytes: chunk.offsetBytes,
    data: chunk.data,
    crc32c: chunk.crc32c,
  };
}

/** A wire chunk as a domain chunk; `data` stays a view of the received message (no copy). */
export function fromWireChunk(
  w: WireChunk | opal.device.v1.KvChunk.$Properties,
  field = "chunk",
): KvChunk {
  return {
    layer: w.layer ?? 0,
    part: partEnum.fromWire(w.part, `${field}.part`),
    offsetBytes: Number(w.offsetBytes ?? 0),
    data: w.data ?? new Uint8Array(),
    crc32c: (w.crc32c ?? 0) >>> 0,
  };
}

/** A resume position as its wire message. */
export function toWirePosition(p: KvPosition): opal.device.v1.KvPosition.$Properties {
  return { layer: p.layer, part: p.part ? partEnum.toWire(p.part) : 0, offsetBytes: p.offsetBytes };
}

/** A wire resume position as a domain position (part UNSPECIFIED → absent). */
export function fromWirePosition(
  w: opal.device.v1.KvPosition.$Properties,
  field = "resume_from",
): KvPosition {
  return {
    layer: w.layer ?? 0,
    ...(w.part ? { part: partEnum.fromWire(w.part, `${field}.part`) } : {}),
    offsetBytes: Number(w.offsetBytes ?? 0),
  };
}

function missing(field: string): OpalError {
  return invalidField(field, "required, got nothing");
}
