import { createKvAssembler } from "../kv-assembler";
import { createKvDigest } from "../kv-digest";
import type { OkvEvent } from "../okv-event";
import {
  decodeOkvHeader,
  decodeOkvPreamble,
  OKV_FRAME_HEADER_BYTES,
  OkvFrameType,
} from "../okv-format";
import { acceptOkvDataFrame } from "./accept-okv-data-frame";
import { assertOkvFrameChecksum } from "./assert-okv-frame-checksum";
import { decodeOkvFrameHeader } from "./decode-okv-frame-header";
import { type OkvDecoderState, OkvStage } from "./okv-decoder-state";
import { verifyOkvIndex } from "./verify-okv-index";
import { verifyOkvTrailer } from "./verify-okv-trailer";

/**
 * Decodes one whole unit of the current stage (`bytes`, `state.need` long: preamble, header, frame
 * header or payload), pushes the events it completes, and sets up the next unit. Throws
 * {@link KvFormatError} on any defect.
 */
export function decodeOkvUnit(state: OkvDecoderState, bytes: Uint8Array, events: OkvEvent[]): void {
  switch (state.stage) {
    case OkvStage.Preamble:
      state.stage = OkvStage.Header;
      startUnit(state, decodeOkvPreamble(bytes) + 4);
      return;
    case OkvStage.Header:
      decodeHeader(state, bytes, events);
      break;
    case OkvStage.FrameHeader:
      decodeOkvFrameHeader(state, bytes);
      break;
    case OkvStage.Payload:
      decodePayload(state, bytes, events);
      break;
  }
  if (state.stage === OkvStage.FrameHeader) startUnit(state, OKV_FRAME_HEADER_BYTES);
  else if (state.stage === OkvStage.Payload) startUnit(state, state.frame.length);
}

function startUnit(state: OkvDecoderState, length: number): void {
  state.need = length;
  state.staged = 0;
}

/** The header JSON and its CRC: the descriptor, the assembler and digest built for it. */
function decodeHeader(state: OkvDecoderState, bytes: Uint8Array, events: OkvEvent[]): void {
  const header = decodeOkvHeader(bytes.subarray(0, state.need));
  const { descriptor, maxFrameBytes } = header;
  state.descriptor = descriptor;
  state.maxFrameBytes = maxFrameBytes;
  state.assembler = createKvAssembler(descriptor, {
    adoptWholeParts: !state.reuse,
    reuseBuffers: state.reuse,
    verifyOnly: state.chunkMode,
  });
  state.digest = state.verifyDigest ? createKvDigest() : undefined;
  state.stage = OkvStage.FrameHeader;
  events.push({ kind: "header", descriptor, maxFrameBytes });
}

/** The payload of the current frame: DATA to the assembler, INDEX and trailer checked. */
function decodePayload(state: OkvDecoderState, payload: Uint8Array, events: OkvEvent[]): void {
  const { frame } = state;
  if (frame.type === OkvFrameType.DATA) {
    acceptOkvDataFrame(state, payload, events);
  } else {
    assertOkvFrameChecksum(frame, payload);
    if (frame.type !== OkvFrameType.INDEX) {
      verifyOkvTrailer(state, payload, events);
      return;
    }
    verifyOkvIndex(state, payload);
  }
  state.stage = OkvStage.FrameHeader;
}
