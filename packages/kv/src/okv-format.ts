import { crc32cOf } from "./crc32c-of";
import { assertValidDescriptor, type KvDescriptor, type KvPart } from "./descriptor";
import { KvFormatError } from "./kv-format-error";

/** The 8 magic bytes that start every `.okv` file: `\x89OKV\r\n\x1a\n`. */
export const OKV_MAGIC: Uint8Array = Uint8Array.of(0x89, 0x4f, 0x4b, 0x56, 0x0d, 0x0a, 0x1a, 0x0a);
/** Major version written and read by this package. */
export const OKV_VERSION_MAJOR = 1;
/** Minor version written by this package. */
export const OKV_VERSION_MINOR = 0;
/** Preamble length: magic, version, header length. */
export const OKV_PREAMBLE_BYTES = 16;
/** Frame header length. */
export const OKV_FRAME_HEADER_BYTES = 24;
/** Trailer payload length. */
export const OKV_TRAILER_PAYLOAD_BYTES = 56;
/** Largest header JSON. */
export const OKV_MAX_HEADER_BYTES = 65_536;
/** Default `maxFrameBytes` of the encoder: 16 MiB. */
export const OKV_DEFAULT_MAX_FRAME_BYTES = 16 << 20;

/** Frame types. */
export const OkvFrameType = { DATA: 1, INDEX: 2, TRAILER: 3 } as const;

/** Part ids of DATA frames, indexed by id. */
export const OKV_PART_IDS: readonly KvPart[] = [
  "k",
  "v",
  "latent",
  "k_scale",
  "v_scale",
  "latent_scale",
];

/** The `.okv` trailer: whole-cache digest and stats. */
export interface OkvTrailer {
  /** XXH3-128 of the canonical bytes (16 bytes), or `undefined` when the writer did not compute it. */
  readonly digest: Uint8Array | undefined;
  readonly totalDataBytes: number;
  readonly dataFrameCount: number;
  /** File offset of the INDEX frame header; 0 when there is none. */
  readonly indexOffset: number;
}

/** The parsed `.okv` header. */
export interface OkvHeader {
  readonly descriptor: KvDescriptor;
  /** Largest DATA payload in the file, bytes. */
  readonly maxFrameBytes: number;
}

/** Writes a uint64 below 2^53 at `offset`. */
export function setUint64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % 0x1_0000_0000, true);
  view.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
}

/** Reads a uint64 and throws OUT_OF_RANGE at or above 2^53. */
export function getUint64(view: DataView, offset: number, field: string): number {
  const lo = view.getUint32(offset, true);
  const hi = view.getUint32(offset + 4, true);
  if (hi >= 1 << 21) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `${field}: uint64 0x${hi.toString(16)}${lo.toString(16).padStart(8, "0")} is not below 2^53`,
    );
  }
  return hi * 0x1_0000_0000 + lo;
}

/** Encodes the preamble, header JSON and header CRC. */
export function encodeOkvHead(header: OkvHeader): Uint8Array {
  const json = new TextEncoder().encode(
    JSON.stringify({
      descriptor: normalizeDescriptor(header.descriptor as unknown as Record<string, unknown>),
      maxFrameBytes: header.maxFrameBytes,
    }),
  );
  if (json.byteLength > OKV_MAX_HEADER_BYTES) {
    throw new KvFormatError(
      "LENGTH_LIMIT",
      `header JSON is ${json.byteLength} bytes, limit ${OKV_MAX_HEADER_BYTES}`,
    );
  }
  const out = new Uint8Array(OKV_PREAMBLE_BYTES + json.byteLength + 4);
  const view = new DataView(out.buffer);
  out.set(OKV_MAGIC, 0);
  view.setUint16(8, OKV_VERSION_MAJOR, true);
  view.setUint16(10, OKV_VERSION_MINOR, true);
  view.setUint32(12, json.byteLength, true);
  out.set(json, OKV_PREAMBLE_BYTES);
  view.setUint32(OKV_PREAMBLE_BYTES + json.byteLength, crc32cOf(json), true);
  return out;
}

/** Checks the 16-byte preamble and returns the header JSON length. */
export function decodeOkvPreamble(bytes: Uint8Array): number {
  for (let i = 0; i < 8; i++) {
    if (bytes[i] !== OKV_MAGIC[i]) {
      throw new KvFormatError(
        "BAD_MAGIC",
        `magic ${hexBytes(bytes.subarray(0, 8))}, expected ${hexBytes(OKV_MAGIC)}`,
      );
    }
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, OKV_PREAMBLE_BYTES);
  const major = view.getUint16(8, true);
  if (major !== OKV_VERSION_MAJOR) {
    throw new KvFormatError(
      "UNSUPPORTED_VERSION",
      `version ${major}.${view.getUint16(10, true)}, expected ${OKV_VERSION_MAJOR}.x`,
    );
  }
  const length = view.getUint32(12, true);
  if (length < 2 || length > OKV_MAX_HEADER_BYTES) {
    throw new KvFormatError(
      "LENGTH_LIMIT",
      `header length ${length}, expected 2 to ${OKV_MAX_HEADER_BYTES}`,
    );
  }
  return length;
}

/** Checks the header CRC, parses and validates the JSON (`json` followed by 4 CRC bytes). */
export function decodeOkvHeader(bytes: Uint8Array): OkvHeader {
  const json = bytes.subarray(0, bytes.byteLength - 4);
  const expected = new DataView(bytes.buffer, bytes.byteOffset + json.byteLength, 4).getUint32(
    0,
    true,
  );
  const actual = crc32cOf(json);
  if (actual !== expected) {
    throw new KvFormatError(
      "CHECKSUM_MISMATCH",
      `header crc32c 0x${hex32(actual)}, expected 0x${hex32(expected)}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(json));
  } catch (cause) {
    throw new KvFormatError("INVALID_HEADER", "header is not valid UTF-8 JSON", { cause });
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new KvFormatError("INVALID_HEADER", "header JSON is not an object");
  }
  const { descriptor, maxFrameBytes } = parsed as Record<string, unknown>;
  if (
    typeof maxFrameBytes !== "number" ||
    !Number.isInteger(maxFrameBytes) ||
    maxFrameBytes < 1 ||
    maxFrameBytes > 1 << 26
  ) {
    throw new KvFormatError(
      "INVALID_HEADER",
      `maxFrameBytes: expected an integer in [1, 67108864], got ${String(maxFrameBytes)}`,
    );
  }
  if (typeof descriptor !== "object" || descriptor === null) {
    throw new KvFormatError("INVALID_HEADER", "header has no descriptor object");
  }
  const clean = normalizeDescriptor(descriptor as Record<string, unknown>);
  assertValidDescriptor(clean);
  return { descriptor: clean, maxFrameBytes };
}

/** Copies the known descriptor fields of a parsed JSON object, dropping anything else. */
export function normalizeDescriptor(d: Record<string, unknown>): KvDescriptor {
  const pick = (o: unknown, keys: readonly string[]): unknown => {
    if (typeof o !== "object" || o === null) return o;
    const out: Record<string, unknown> = {};
    for (const key of keys)
      if (Object.hasOwn(o, key)) out[key] = (o as Record<string, unknown>)[key];
    return out;
  };
  return {
    modelFingerprint: d.modelFingerprint,
    numLayers: d.numLayers,
    attention: pick(d.attention, ["kind", "numKvHeads", "headDim", "latentDim", "ropeDim"]),
    headRange: pick(d.headRange, ["start", "count"]),
    dtype: d.dtype,
    scaleScheme: d.scaleScheme,
    layout: d.layout,
    tokenStart: d.tokenStart,
    tokenCount: d.tokenCount,
    blockSizeTokens: d.blockSizeTokens,
    numerics: pick(d.numerics, [
      "deviceKind",
      "precisionPath",
      "bitExact",
      "maxAbsError",
      "maxRelError",
    ]),
  } as unknown as KvDescriptor;
}

/** Encodes a 24-byte frame header. */
export function encodeOkvFrameHeader(
  type: number,
  partId: number,
  layer: number,
  offsetBytes: number,
  payload: Uint8Array,
  crc: number,
): Uint8Array {
  const out = new Uint8Array(OKV_FRAME_HEADER_BYTES);
  const view = new DataView(out.buffer);
  out[0] = type;
  out[1] = partId;
  view.setUint32(4, layer, true);
  setUint64(view, 8, offsetBytes);
  view.setUint32(16, payload.byteLength, true);
  view.setUint32(20, crc, true);
  return out;
}

/** Lower-case 8-digit hex of a uint32. */
export function hex32(value: number): string {
  return (value >>> 0).toString(16).padStart(8, "0");
}

function hexBytes(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** CRC32C of an INDEX or TRAILER payload. */
export function crc32cOfPayload(payload: Uint8Array): number {
  return crc32cOf(payload);
}
