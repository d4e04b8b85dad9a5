import type { KvAssembler } from "../kv-assembler";
import type { KvChunk } from "../kv-chunk";
import type { OkvEvent } from "../okv-event";
import { OKV_PART_IDS } from "../okv-format";
import type { OkvDecoderState } from "./okv-decoder-state";

/**
 * Hands the payload of the current DATA frame to the assembler (which verifies its CRC32C, order
 * and bounds), feeds the digest and counts it; pushes the "chunk" event in chunk mode, or the
 * "layer" event when it completes a layer. Throws as `KvAssembler.accept`.
 */
export function acceptOkvDataFrame(
  state: OkvDecoderState,
  payload: Uint8Array,
  events: OkvEvent[],
): void {
  const { frame } = state;
  if (frame.layer !== state.lastLayerStarted) {
    state.layerOffsets.push(frame.at);
    state.lastLayerStarted = frame.layer;
  }
  const chunk: KvChunk = {
    layer: frame.layer,
    part: OKV_PART_IDS[frame.partId] as (typeof OKV_PART_IDS)[number],
    offsetBytes: frame.offsetBytes,
    data: payload,
    crc32c: frame.crc,
  };
  const done = (state.assembler as KvAssembler).accept(chunk);
  state.digest?.update(payload);
  state.dataFrames++;
  state.dataBytes += payload.byteLength;
  if (state.chunkMode) events.push({ kind: "chunk", chunk });
  else if (done) events.push({ kind: "layer", layer: done });
}
