import type { opal } from "./gen/pb.js";

type Chunk = opal.device.v1.KvChunk.$Properties;

/** Reused by every call for messages up to {@link SCRATCH_MAX_BYTES}; larger ones get their own. */
let scratch = Buffer.alloc(0);
const SCRATCH_MAX_BYTES = 16 * 1024 * 1024 + 1024;

/** Chunks at least this large get `alignment_padding` (PF-48); smaller ones are not worth it. */
const ALIGN_FROM_BYTES = 64 * 1024;
/** The gRPC message prefix: compressed flag and 4-byte length. */
const GRPC_PREFIX_BYTES = 5;

/**
 * Encodes a `PrefillResponse` or `FetchKvResponse` that carries only a `chunk` (field 2 in both)
 * into a scratch buffer reused by the next call: one copy of the chunk's data, no allocation.
 * Chunks of 64 KiB or more get `alignment_padding` before `data`, so that `data` starts 8-byte
 * aligned in the gRPC frame and a receiver can keep it without copying (PF-48).
 * The result is valid only until the next call, so it suits a serializer whose output is copied
 * at once (grpc-js copies it into the message frame before `write` returns). protobufjs produces
 * the same bytes but builds an operation list and allocates per message, and a fresh 1 MiB buffer
 * per chunk costs the sender page faults and garbage collection; this is the hot path of KV
 * streaming, so it is written out by hand. Returns undefined for any other message (the caller
 * falls back to protobufjs).
 */
export function encodeChunkResponse(
  message: { chunk?: Chunk | null } & Record<string, unknown>,
): Buffer | undefined {
  const chunk = message.chunk;
  if (!chunk || Object.keys(message).length !== 1 || chunk.dataRef) return undefined;
  const layer = chunk.layer ?? 0;
  const part = chunk.part ?? 0;
  const offset = Number(chunk.offsetBytes ?? 0);
  const data = chunk.data ?? new Uint8Array();
  const crc = (chunk.crc32c ?? 0) >>> 0;
  const fields =
    (layer ? 1 + varintSize(layer) : 0) +
    (part ? 1 + varintSize(part) : 0) +
    (offset ? 1 + varintSize(offset) : 0) +
    (data.byteLength ? 1 + varintSize(data.byteLength) + data.byteLength : 0) +
    (crc ? 5 : 0);
  // Padding field: tag, one-byte length, zeros. Its size changes the outer length varint, which
  // moves `data` again, so settle it in a loop (two rounds at most).
  let padding = 0;
  if (data.byteLength >= ALIGN_FROM_BYTES) {
    for (;;) {
      const inner = fields + padding;
      const dataAt =
        GRPC_PREFIX_BYTES +
        1 +
        varintSize(inner) +
        fields -
        data.byteLength -
        (crc ? 5 : 0) +
        padding;
      const shift = (8 - (dataAt % 8)) % 8;
      if (shift === 0) break;
      padding = padding === 0 ? (shift < 2 ? shift + 8 : shift) : padding + shift;
    }
  }
  const inner = fields + padding;
  const size = 1 + varintSize(inner) + inner;
  let out: Buffer;
  if (size > SCRATCH_MAX_BYTES) {
    out = Buffer.allocUnsafe(size);
  } else {
    if (scratch.byteLength < size) scratch = Buffer.allocUnsafe(size);
    out = scratch.subarray(0, size);
  }
  let at = 0;
  out[at++] = 0x12; // field 2 (chunk), length-delimited
  at = writeVarint(out, at, inner);
  if (layer) {
    out[at++] = 0x08; // field 1 (layer), varint
    at = writeVarint(out, at, layer);
  }
  if (part) {
    out[at++] = 0x10; // field 2 (part), varint
    at = writeVarint(out, at, part);
  }
  if (offset) {
    out[at++] = 0x18; // field 3 (offset_bytes), varint
    at = writeVarint(out, at, offset);
  }
  if (padding) {
    out[at++] = 0x7a; // field 15 (alignment_padding), length-delimited
    out[at++] = padding - 2;
    out.fill(0, at, at + padding - 2);
    at += padding - 2;
  }
  if (data.byteLength) {
    out[at++] = 0x22; // field 4 (data), length-delimited
    at = writeVarint(out, at, data.byteLength);
    out.set(data, at);
    at += data.byteLength;
  }
  if (crc) {
    out[at++] = 0x2d; // field 5 (crc32c), fixed32
    out.writeUInt32LE(crc, at);
  }
  return out;
}

function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

function writeVarint(out: Buffer, at: number, value: number): number {
  while (value >= 0x80) {
    out[at++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  out[at++] = value;
  return at;
}
