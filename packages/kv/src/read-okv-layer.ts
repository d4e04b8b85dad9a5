import { createKvAssembler } from "./kv-assembler";
import type { KvLayerParts } from "./kv-cache";
import { MAX_CHUNK_BYTES } from "./kv-chunk";
import { KvFormatError } from "./kv-format-error";
import {
  crc32cOfPayload,
  decodeOkvHeader,
  decodeOkvPreamble,
  getUint64,
  OKV_FRAME_HEADER_BYTES,
  OKV_PART_IDS,
  OKV_PREAMBLE_BYTES,
  OKV_TRAILER_PAYLOAD_BYTES,
  OkvFrameType,
} from "./okv-format";

/**
 * Random access: reads layer `layer` of an in-memory `.okv` file through its INDEX frame without
 * decoding the other layers. Checks the header, trailer and index CRCs and the layer's frames
 * (flags, payload length against `maxFrameBytes`, CRC, order, offsets), not the whole-cache digest.
 * Parts are copies. Throws INVALID_FRAME when the file has no index.
 */
export function readOkvLayer(bytes: Uint8Array, layer: number): KvLayerParts {
  if (bytes.byteLength < OKV_PREAMBLE_BYTES)
    throw new KvFormatError("TRUNCATED", `file is ${bytes.byteLength} bytes`);
  const headerLength = decodeOkvPreamble(bytes);
  const dataStart = OKV_PREAMBLE_BYTES + headerLength + 4;
  const trailerAt = bytes.byteLength - OKV_FRAME_HEADER_BYTES - OKV_TRAILER_PAYLOAD_BYTES;
  if (trailerAt < dataStart)
    throw new KvFormatError(
      "TRUNCATED",
      `file is ${bytes.byteLength} bytes, too short for header and trailer`,
    );
  const { descriptor, maxFrameBytes } = decodeOkvHeader(
    bytes.subarray(OKV_PREAMBLE_BYTES, dataStart),
  );
  const frameLimit = Math.min(maxFrameBytes, MAX_CHUNK_BYTES);
  if (!Number.isInteger(layer) || layer < 0 || layer >= descriptor.numLayers) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `layer ${layer} out of range (file has ${descriptor.numLayers} layers)`,
    );
  }
  const frameAt = (at: number, type: number, length: number) => {
    const view = new DataView(bytes.buffer, bytes.byteOffset + at, OKV_FRAME_HEADER_BYTES);
    if (bytes[at] !== type || view.getUint32(16, true) !== length) {
      throw new KvFormatError(
        "INVALID_FRAME",
        `expected a frame of type ${type} with ${length} payload bytes at offset ${at}`,
      );
    }
    const payload = bytes.subarray(
      at + OKV_FRAME_HEADER_BYTES,
      at + OKV_FRAME_HEADER_BYTES + length,
    );
    if (crc32cOfPayload(payload) !== view.getUint32(20, true)) {
      throw new KvFormatError(
        "CHECKSUM_MISMATCH",
        `frame type ${type} at offset ${at}: crc32c mismatch`,
      );
    }
    return new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  };
  const trailer = frameAt(trailerAt, OkvFrameType.TRAILER, OKV_TRAILER_PAYLOAD_BYTES);
  const indexAt = getUint64(trailer, 48, "trailer indexOffset");
  if (indexAt === 0) throw new KvFormatError("INVALID_FRAME", "file has no INDEX frame");
  if (
    indexAt < dataStart ||
    indexAt + OKV_FRAME_HEADER_BYTES + 8 * descriptor.numLayers > trailerAt
  ) {
    throw new KvFormatError(
      "INVALID_OFFSETS",
      `indexOffset ${indexAt} outside [${dataStart}, ${trailerAt})`,
    );
  }
  const index = frameAt(indexAt, OkvFrameType.INDEX, 8 * descriptor.numLayers);
  let at = getUint64(index, 8 * layer, `index entry ${layer}`);
  if (at < dataStart || at >= indexAt)
    throw new KvFormatError(
      "INVALID_OFFSETS",
      `index entry ${layer}: offset ${at} outside the data frames`,
    );
  // Assemble a one-layer view: a descriptor-shaped assembler fed with this layer's frames only.
  const assembler = createKvAssembler({ ...descriptor, numLayers: 1 });
  for (;;) {
    if (at + OKV_FRAME_HEADER_BYTES > indexAt)
      throw new KvFormatError("TRUNCATED", `layer ${layer} runs into the index`);
    const view = new DataView(bytes.buffer, bytes.byteOffset + at, OKV_FRAME_HEADER_BYTES);
    const partId = bytes[at + 1] as number;
    const length = view.getUint32(16, true);
    if (
      bytes[at] !== OkvFrameType.DATA ||
      view.getUint16(2, true) !== 0 ||
      view.getUint32(4, true) !== layer ||
      partId >= OKV_PART_IDS.length
    ) {
      throw new KvFormatError(
        "INVALID_FRAME",
        `expected a DATA frame of layer ${layer} with flags 0 at offset ${at}`,
      );
    }
    if (length < 1 || length > frameLimit) {
      throw new KvFormatError(
        "LENGTH_LIMIT",
        `frame at offset ${at}: payload ${length} bytes, expected 1 to ${frameLimit}`,
      );
    }
    const end = at + OKV_FRAME_HEADER_BYTES + length;
    if (end > indexAt)
      throw new KvFormatError("LENGTH_LIMIT", `frame at offset ${at} runs past the data`);
    const done = assembler.accept({
      layer: 0,
      part: OKV_PART_IDS[partId] as (typeof OKV_PART_IDS)[number],
      offsetBytes: getUint64(view, 8, "frame offsetBytes"),
      data: bytes.subarray(at + OKV_FRAME_HEADER_BYTES, end),
      crc32c: view.getUint32(20, true),
    });
    at = end;
    if (done) return { layer, parts: done.parts };
  }
}
