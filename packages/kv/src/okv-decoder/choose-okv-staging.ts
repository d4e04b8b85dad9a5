import { OKV_PART_IDS, OkvFrameType } from "../okv-format";
import { type OkvDecoderState, OkvStage } from "./okv-decoder-state";

/**
 * Picks where the unit of `state.need` bytes that starts now, and spans inputs, is collected:
 * straight into the assembler's part buffer for the DATA frame it expects next, the one frame
 * buffer in reuse mode, a fresh buffer for other payloads (the assembler may adopt it), or the
 * small buffer for headers.
 */
export function chooseOkvStaging(state: OkvDecoderState): void {
  const { frame, assembler, need } = state;
  const payload = state.stage === OkvStage.Payload;
  // Only the frame the assembler expects may touch its buffers: others fail in `accept`.
  const next = assembler?.next;
  const expected =
    payload &&
    frame.type === OkvFrameType.DATA &&
    next !== undefined &&
    frame.layer === next.layer &&
    OKV_PART_IDS[frame.partId] === next.part &&
    frame.offsetBytes === next.offsetBytes;
  const target = expected ? assembler?.nextTarget(need) : undefined;
  if (target) {
    state.staging = target;
  } else if (payload && state.reuse) {
    // The assembler copies in reuse mode: one frame buffer serves every frame.
    if (state.frameBuffer.byteLength < need) state.frameBuffer = new Uint8Array(need);
    state.staging = state.frameBuffer;
  } else if (payload) {
    // Payloads get a fresh buffer: the assembler may adopt it as a part.
    state.staging = new Uint8Array(need);
  } else {
    if (state.small.byteLength < need) state.small = new Uint8Array(need);
    state.staging = state.small;
  }
}
