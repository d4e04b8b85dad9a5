import type { KvAssembler } from "../kv-assembler";
import { MAX_CHUNK_BYTES } from "../kv-chunk";
import { KvFormatError } from "../kv-format-error";
import {
  getUint64,
  OKV_FRAME_HEADER_BYTES,
  OKV_PART_IDS,
  OKV_TRAILER_PAYLOAD_BYTES,
  OkvFrameType,
} from "../okv-format";
import { type OkvDecoderState, type OkvFrame, OkvStage } from "./okv-decoder-state";

/**
 * Reads the frame header just staged (`bytes`, 24 bytes ending at `state.position`) and moves to
 * its payload. Throws {@link KvFormatError}: INVALID_FRAME for non-zero flags, an unknown type or
 * part id, or reserved fields set; LENGTH_LIMIT for a payload length out of bounds; OUT_OF_ORDER
 * for DATA after the INDEX, a second INDEX, or an INDEX before the last layer; TRUNCATED for a
 * trailer before the last layer.
 */
export function decodeOkvFrameHeader(state: OkvDecoderState, bytes: Uint8Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, OKV_FRAME_HEADER_BYTES);
  const type = bytes[0] as number;
  const flags = view.getUint16(2, true);
  const frame: OkvFrame = {
    type,
    partId: bytes[1] as number,
    layer: view.getUint32(4, true),
    offsetBytes: getUint64(view, 8, "frame offsetBytes"),
    length: view.getUint32(16, true),
    crc: view.getUint32(20, true),
    at: state.position - OKV_FRAME_HEADER_BYTES,
  };
  if (flags !== 0)
    throw new KvFormatError(
      "INVALID_FRAME",
      `frame at offset ${frame.at}: flags 0x${flags.toString(16)}, expected 0`,
    );
  if (type === OkvFrameType.DATA) {
    checkDataFrame(state, frame);
  } else if (type === OkvFrameType.INDEX || type === OkvFrameType.TRAILER) {
    checkIndexOrTrailerFrame(state, frame);
  } else {
    throw new KvFormatError(
      "INVALID_FRAME",
      `frame at offset ${frame.at}: type ${type}, expected 1, 2 or 3`,
    );
  }
  state.frame = frame;
  state.stage = OkvStage.Payload;
}

function checkDataFrame(state: OkvDecoderState, frame: OkvFrame): void {
  const { partId, length, at } = frame;
  if (partId >= OKV_PART_IDS.length) {
    throw new KvFormatError(
      "INVALID_FRAME",
      `frame at offset ${at}: part id ${partId}, expected 0 to ${OKV_PART_IDS.length - 1}`,
    );
  }
  const limit = Math.min(state.maxFrameBytes, MAX_CHUNK_BYTES);
  if (length < 1 || length > limit) {
    throw new KvFormatError(
      "LENGTH_LIMIT",
      `frame at offset ${at}: payload ${length} bytes, expected 1 to ${limit}`,
    );
  }
  if (state.indexOffset !== 0)
    throw new KvFormatError("OUT_OF_ORDER", `DATA frame at offset ${at} after the INDEX frame`);
}

function checkIndexOrTrailerFrame(state: OkvDecoderState, frame: OkvFrame): void {
  const { type, at } = frame;
  if (frame.partId !== 0 || frame.layer !== 0 || frame.offsetBytes !== 0) {
    throw new KvFormatError(
      "INVALID_FRAME",
      `frame type ${type} at offset ${at}: reserved fields are not 0`,
    );
  }
  const expected =
    type === OkvFrameType.INDEX ? 8 * state.descriptor!.numLayers : OKV_TRAILER_PAYLOAD_BYTES;
  if (frame.length !== expected) {
    throw new KvFormatError(
      "LENGTH_LIMIT",
      `frame type ${type} at offset ${at}: payload ${frame.length} bytes, expected ${expected}`,
    );
  }
  const assembler = state.assembler as KvAssembler;
  if (!assembler.complete) {
    const next = assembler.next;
    throw new KvFormatError(
      type === OkvFrameType.TRAILER ? "TRUNCATED" : "OUT_OF_ORDER",
      `frame type ${type} at offset ${at} before the end of the data (next expected layer ${next?.layer} part ${next?.part} offset ${next?.offsetBytes})`,
    );
  }
  if (type === OkvFrameType.INDEX && state.indexOffset !== 0) {
    throw new KvFormatError("OUT_OF_ORDER", `second INDEX frame at offset ${at}`);
  }
}
