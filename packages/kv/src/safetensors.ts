import type { KvDtype } from "./descriptor";
import { KvFormatError } from "./kv-format-error";

/** Element types of the safetensors format (the spec's strings). */
export type SafetensorsDtype =
  | "BOOL"
  | "U8"
  | "I8"
  | "F8_E5M2"
  | "F8_E4M3"
  | "I16"
  | "U16"
  | "F16"
  | "BF16"
  | "I32"
  | "U32"
  | "F32"
  | "F64"
  | "I64"
  | "U64";

/** One tensor: dtype, shape and its bytes (little-endian, row-major). */
export interface SafetensorsTensor {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** A view into the file's bytes (decode) or the caller's bytes (encode). */
  readonly data: Uint8Array;
}

/** A decoded safetensors file. */
export interface SafetensorsFile {
  /** Tensors by name, in file order of their data. */
  readonly tensors: ReadonlyMap<string, SafetensorsTensor>;
  /** The `__metadata__` string map; empty when absent or null. */
  readonly metadata: Readonly<Record<string, string>>;
}

/** Bytes per element of each safetensors dtype. */
export const SAFETENSORS_DTYPE_SIZES: Readonly<Record<SafetensorsDtype, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

/**
 * The reference implementation's `Dtype` enum order (its derived `Ord`), by which its writer lays
 * out tensors: descending, then by name.
 */
const DTYPE_RANK: Readonly<Record<SafetensorsDtype, number>> = {
  BOOL: 0,
  U8: 1,
  I8: 2,
  F8_E5M2: 3,
  F8_E4M3: 4,
  I16: 5,
  U16: 6,
  F16: 7,
  BF16: 8,
  I32: 9,
  U32: 10,
  F32: 11,
  F64: 12,
  I64: 13,
  U64: 14,
};

/** Largest header accepted by {@link decodeSafetensors}: 100 MB, as the reference implementation. */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;

const kvToSafetensors: Readonly<Record<KvDtype, SafetensorsDtype>> = {
  f32: "F32",
  f16: "F16",
  bf16: "BF16",
  fp8_e4m3fn: "F8_E4M3",
  fp8_e5m2: "F8_E5M2",
  int8: "I8",
};

/** The safetensors dtype string of a KV dtype (`fp8_e4m3fn` -> `F8_E4M3`, ...). */
export function toSafetensorsDtype(dtype: KvDtype): SafetensorsDtype {
  const out = kvToSafetensors[dtype];
  if (!out)
    throw new KvFormatError(
      "UNSUPPORTED_DTYPE",
      `dtype ${String(dtype)} has no safetensors equivalent`,
    );
  return out;
}

/** The KV dtype of a safetensors dtype; UNSUPPORTED_DTYPE for dtypes KV caches do not use. */
export function fromSafetensorsDtype(dtype: SafetensorsDtype): KvDtype {
  for (const [kv, st] of Object.entries(kvToSafetensors)) if (st === dtype) return kv as KvDtype;
  throw new KvFormatError(
    "UNSUPPORTED_DTYPE",
    `safetensors dtype ${dtype} is not a KV dtype (expected F32, F16, BF16, F8_E4M3, F8_E5M2 or I8)`,
  );
}

/** Options of {@link decodeSafetensors}. */
export interface DecodeSafetensorsOptions {
  /** Largest header JSON in bytes; default 100 MB. */
  readonly maxHeaderBytes?: number;
}

function elementCount(name: string, shape: unknown, limit: number): number {
  if (!Array.isArray(shape))
    throw new KvFormatError("INVALID_HEADER", `tensor ${name}: shape is not an array`);
  for (const dim of shape) {
    if (typeof dim !== "number" || !Number.isSafeInteger(dim) || dim < 0) {
      throw new KvFormatError(
        "INVALID_HEADER",
        `tensor ${name}: shape entry ${JSON.stringify(dim)} is not an integer >= 0`,
      );
    }
  }
  // A zero dimension makes an empty tensor however large the others are (the spec allows it).
  if (shape.includes(0)) return 0;
  let n = 1;
  for (const dim of shape as number[]) {
    n *= dim;
    // Checked arithmetic: stop as soon as the product exceeds what the buffer could hold.
    if (n > limit) {
      throw new KvFormatError(
        "SHAPE_MISMATCH",
        `tensor ${name}: shape [${shape.join(", ")}] needs more than the ${limit} data bytes present`,
      );
    }
  }
  return n;
}

/**
 * Parses a safetensors file (header length, JSON header, data) without copying: tensor data are
 * views of `bytes`. Enforces the spec: header within bounds and a JSON object starting with `{`
 * (trailing spaces allowed), known dtypes, `data_offsets` sorted, contiguous from 0 and covering the
 * data exactly (no holes, no overlap), byte lengths equal to `product(shape) * dtypeSize`,
 * `__metadata__` a string map or null (read as no metadata, as the reference reader does). Throws
 * {@link KvFormatError}.
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  options: DecodeSafetensorsOptions = {},
): SafetensorsFile {
  const maxHeader = options.maxHeaderBytes ?? SAFETENSORS_MAX_HEADER_BYTES;
  if (bytes.byteLength < 8)
    throw new KvFormatError("TRUNCATED", `file is ${bytes.byteLength} bytes, expected at least 8`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, 8);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  const headerBytes = hi * 0x1_0000_0000 + lo;
  if (hi !== 0 || headerBytes > maxHeader) {
    throw new KvFormatError("LENGTH_LIMIT", `header length ${headerBytes}, limit ${maxHeader}`);
  }
  if (8 + headerBytes > bytes.byteLength) {
    throw new KvFormatError(
      "TRUNCATED",
      `header length ${headerBytes} runs past the end of the ${bytes.byteLength}-byte file`,
    );
  }
  const headerView = bytes.subarray(8, 8 + headerBytes);
  if (headerBytes < 2 || headerView[0] !== 0x7b) {
    throw new KvFormatError("INVALID_HEADER", "header does not start with '{'");
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerView));
  } catch (cause) {
    throw new KvFormatError("INVALID_HEADER", "header is not valid UTF-8 JSON", { cause });
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new KvFormatError("INVALID_HEADER", "header is not a JSON object");
  }
  const data = bytes.subarray(8 + headerBytes);
  let metadata: Record<string, string> = {};
  const entries: {
    name: string;
    dtype: SafetensorsDtype;
    shape: number[];
    begin: number;
    end: number;
  }[] = [];
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      // null means no metadata, as in the reference reader (an `Option` of a string map).
      if (value === null) continue;
      if (typeof value !== "object" || Array.isArray(value)) {
        throw new KvFormatError(
          "INVALID_HEADER",
          `__metadata__ is ${Array.isArray(value) ? "an array" : `a ${typeof value}`}, expected an object of strings or null`,
        );
      }
      metadata = {};
      for (const [key, text] of Object.entries(value)) {
        if (typeof text !== "string")
          throw new KvFormatError("INVALID_HEADER", `__metadata__.${key} is not a string`);
        // defineProperty: a key such as "__proto__" stays a plain entry.
        Object.defineProperty(metadata, key, {
          value: text,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      continue;
    }
    if (typeof value !== "object" || value === null)
      throw new KvFormatError("INVALID_HEADER", `tensor ${name} is not an object`);
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (typeof dtype !== "string" || !Object.hasOwn(SAFETENSORS_DTYPE_SIZES, dtype)) {
      throw new KvFormatError(
        "UNSUPPORTED_DTYPE",
        `tensor ${name}: dtype ${JSON.stringify(dtype)} is not supported`,
      );
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => typeof o === "number" && Number.isSafeInteger(o) && o >= 0)
    ) {
      throw new KvFormatError(
        "INVALID_HEADER",
        `tensor ${name}: data_offsets is not [begin, end] of integers`,
      );
    }
    const [begin, end] = offsets as [number, number];
    const n = elementCount(name, shape, data.byteLength);
    const size = SAFETENSORS_DTYPE_SIZES[dtype as SafetensorsDtype];
    if (end < begin || end > data.byteLength) {
      throw new KvFormatError(
        "INVALID_OFFSETS",
        `tensor ${name}: data_offsets [${begin}, ${end}] outside the ${data.byteLength}-byte data`,
      );
    }
    if (end - begin !== n * size) {
      throw new KvFormatError(
        "SHAPE_MISMATCH",
        `tensor ${name}: ${end - begin} bytes, expected ${n} x ${size} = ${n * size} for shape [${(shape as number[]).join(", ")}]`,
      );
    }
    entries.push({
      name,
      dtype: dtype as SafetensorsDtype,
      shape: [...(shape as number[])],
      begin,
      end,
    });
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const e of entries) {
    if (e.begin !== expected) {
      throw new KvFormatError(
        "INVALID_OFFSETS",
        `tensor ${e.name} starts at ${e.begin}, expected ${expected} (${e.begin < expected ? "overlap" : "hole"})`,
      );
    }
    expected = e.end;
  }
  if (expected !== data.byteLength) {
    throw new KvFormatError(
      "INVALID_OFFSETS",
      `tensors cover ${expected} data bytes, the file has ${data.byteLength}`,
    );
  }
  const tensors = new Map<string, SafetensorsTensor>();
  for (const e of entries)
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: data.subarray(e.begin, e.end) });
  return { tensors, metadata };
}

/** Tensors to encode: an iterable of `[name, tensor]` or a record. */
export type SafetensorsInput =
  | Iterable<readonly [string, SafetensorsTensor]>
  | Readonly<Record<string, SafetensorsTensor>>;

/** Options of {@link encodeSafetensors}. */
export interface EncodeSafetensorsOptions {
  /** The `__metadata__` string map; default none. */
  readonly metadata?: Readonly<Record<string, string>>;
}

function entriesOf(tensors: SafetensorsInput): [string, SafetensorsTensor][] {
  const list =
    Symbol.iterator in (tensors as object)
      ? [...(tensors as Iterable<readonly [string, SafetensorsTensor]>)]
      : Object.entries(tensors as Record<string, SafetensorsTensor>);
  return list.map(([name, t]) => [name, t]);
}

/**
 * The pieces of a safetensors file in write order: the 8-byte length plus header (padded with
 * spaces to a multiple of 8, as the reference writer does), then each tensor's data as the caller's
 * view (no copy). Tensors are laid out as the reference writer lays them out: by its dtype order
 * descending (`U64, I64, F64, F32, U32, I32, BF16, F16, U16, I16, F8_E4M3, F8_E5M2, I8, U8, BOOL`),
 * then by the UTF-8 bytes of the name. Everything is checked before the first piece is yielded:
 * SHAPE_MISMATCH when a tensor's bytes do not match its shape, INVALID_HEADER for a tensor named
 * `__metadata__`, a name given twice, or a metadata value that is not a string.
 */
export function* encodeSafetensorsPieces(
  tensors: SafetensorsInput,
  options: EncodeSafetensorsOptions = {},
): Generator<Uint8Array> {
  const list = entriesOf(tensors);
  list.sort(
    ([an, a], [bn, b]) =>
      DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || Buffer.compare(Buffer.from(an), Buffer.from(bn)),
  );
  // No prototype: a tensor or metadata key such as "__proto__" stays a plain entry of the JSON.
  const header: Record<string, unknown> = Object.create(null);
  if (options.metadata) {
    const metadata: Record<string, string> = Object.create(null);
    for (const [key, value] of Object.entries(options.metadata)) {
      if (typeof value !== "string")
        throw new KvFormatError("INVALID_HEADER", `__metadata__.${key} is not a string`);
      metadata[key] = value;
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const [name, t] of list) {
    if (name === "__metadata__")
      throw new KvFormatError("INVALID_HEADER", "a tensor may not be named __metadata__");
    if (Object.hasOwn(header, name))
      throw new KvFormatError("INVALID_HEADER", `tensor ${name} is given twice`);
    const size = Object.hasOwn(SAFETENSORS_DTYPE_SIZES, t.dtype)
      ? SAFETENSORS_DTYPE_SIZES[t.dtype]
      : undefined;
    if (size === undefined)
      throw new KvFormatError(
        "UNSUPPORTED_DTYPE",
        `tensor ${name}: dtype ${String(t.dtype)} is not supported`,
      );
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (
      !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0) ||
      n * size !== t.data.byteLength
    ) {
      throw new KvFormatError(
        "SHAPE_MISMATCH",
        `tensor ${name}: ${t.data.byteLength} bytes, expected ${n * size} for ${t.dtype} [${t.shape.join(", ")}]`,
      );
    }
    header[name] = {
      dtype: t.dtype,
      shape: [...t.shape],
      data_offsets: [offset, offset + t.data.byteLength],
    };
    offset += t.data.byteLength;
  }
  yield encodeSafetensorsHeader(header);
  for (const [, t] of list) if (t.data.byteLength > 0) yield t.data;
}

/**
 * The first bytes of a safetensors file: the 8-byte little-endian length, then the JSON `header`
 * (`__metadata__` and each tensor's dtype, shape and data_offsets, as given) padded with spaces to
 * a multiple of 8, as the reference writer does. For writers that stream the tensor data after it.
 */
export function encodeSafetensorsHeader(header: Readonly<Record<string, unknown>>): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const head = new Uint8Array(8 + padded).fill(0x20, 8 + json.byteLength);
  const view = new DataView(head.buffer);
  view.setUint32(0, padded % 0x1_0000_0000, true);
  view.setUint32(4, Math.floor(padded / 0x1_0000_0000), true);
  head.set(json, 8);
  return head;
}

/** Encodes tensors as one safetensors byte array (see {@link encodeSafetensorsPieces}). */
export function encodeSafetensors(
  tensors: SafetensorsInput,
  options: EncodeSafetensorsOptions = {},
): Uint8Array {
  const pieces = [...encodeSafetensorsPieces(tensors, options)];
  const out = new Uint8Array(pieces.reduce((a, p) => a + p.byteLength, 0));
  let offset = 0;
  for (const piece of pieces) {
    out.set(piece, offset);
    offset += piece.byteLength;
  }
  return out;
}
