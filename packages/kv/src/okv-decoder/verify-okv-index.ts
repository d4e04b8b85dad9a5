import { KvFormatError } from "../kv-format-error";
import { getUint64 } from "../okv-format";
import type { OkvDecoderState } from "./okv-decoder-state";

/**
 * Checks the checksummed payload of the INDEX frame against the offsets of the layers read, and
 * records where the INDEX is. Throws INVALID_OFFSETS for an entry that differs, OUT_OF_RANGE for
 * an offset at or above 2^53.
 */
export function verifyOkvIndex(state: OkvDecoderState, payload: Uint8Array): void {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const { layerOffsets } = state;
  for (let i = 0; i < layerOffsets.length; i++) {
    const offset = getUint64(view, 8 * i, `index entry ${i}`);
    if (offset !== layerOffsets[i]) {
      throw new KvFormatError(
        "INVALID_OFFSETS",
        `index entry ${i}: offset ${offset}, expected ${layerOffsets[i]}`,
      );
    }
  }
  state.indexOffset = state.frame.at;
}
