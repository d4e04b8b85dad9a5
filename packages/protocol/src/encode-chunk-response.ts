import type { opal } from "./gen/pb.js";

type Chunk = opal.device.v1.KvChunk.$Properties;

/**
 * Encodes a `PrefillResponse` or `FetchKvResponse` that carries only a `chunk` (field 2 in both)
 * straight into one buffer of the exact size: one allocation and one copy of the chunk's data.
 * protobufjs produces the same bytes but builds an operation list and allocates per message; this
 * is the hot path of KV streaming, so it is written out by hand. Returns undefined for any other
 * message (the caller falls back to protobufjs).
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
  const inner =
    (layer ? 1 + varintSize(layer) : 0) +
    (part ? 1 + varintSize(part) : 0) +
    (offset ? 1 + varintSize(offset) : 0) +
    (data.byteLength ? 1 + varintSize(data.byteLength) + data.byteLength : 0) +
    (crc ? 5 : 0);
  const out = Buffer.allocUnsafe(1 + varintSize(inner) + inner);
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
