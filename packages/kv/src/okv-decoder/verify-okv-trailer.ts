import { KV_DIGEST_BYTE_LENGTH } from "../kv-digest";
import { KvFormatError } from "../kv-format-error";
import type { OkvEvent } from "../okv-event";
import { getUint64 } from "../okv-format";
import { type OkvDecoderState, OkvStage } from "./okv-decoder-state";

/**
 * Checks the checksummed trailer payload against what was read: its flags, data byte and frame
 * counts, INDEX offset, reserved bytes and (when stored and verified) the whole-cache digest; then
 * ends the file with the "trailer" event. Throws {@link KvFormatError}: INVALID_FRAME,
 * INVALID_OFFSETS, DIGEST_MISMATCH or OUT_OF_RANGE.
 */
export function verifyOkvTrailer(
  state: OkvDecoderState,
  payload: Uint8Array,
  events: OkvEvent[],
): void {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const flags = view.getUint32(44, true);
  if (flags > 1)
    throw new KvFormatError(
      "INVALID_FRAME",
      `trailer flags 0x${flags.toString(16)}, expected 0 or 1`,
    );
  const totalDataBytes = getUint64(view, 32, "trailer totalDataBytes");
  const dataFrameCount = view.getUint32(40, true);
  const trailerIndex = getUint64(view, 48, "trailer indexOffset");
  const { dataBytes, dataFrames, indexOffset } = state;
  if (totalDataBytes !== dataBytes || dataFrameCount !== dataFrames) {
    throw new KvFormatError(
      "INVALID_FRAME",
      `trailer says ${totalDataBytes} bytes in ${dataFrameCount} frames, read ${dataBytes} bytes in ${dataFrames} frames`,
    );
  }
  if (trailerIndex !== indexOffset) {
    throw new KvFormatError(
      "INVALID_OFFSETS",
      `trailer indexOffset ${trailerIndex}, expected ${indexOffset}`,
    );
  }
  if (payload.subarray(KV_DIGEST_BYTE_LENGTH, 32).some((byte) => byte !== 0)) {
    throw new KvFormatError(
      "INVALID_FRAME",
      `trailer bytes ${KV_DIGEST_BYTE_LENGTH}..31 are reserved and must be zero (a file from a pre-release writer with a 32-byte SHA-256 digest?)`,
    );
  }
  const stored = flags & 1 ? payload.slice(0, KV_DIGEST_BYTE_LENGTH) : undefined;
  if (stored && state.digest) {
    const actualDigest = state.digest.digest();
    if (Buffer.compare(actualDigest, stored) !== 0) {
      throw new KvFormatError(
        "DIGEST_MISMATCH",
        `cache digest ${Buffer.from(actualDigest).toString("hex")}, expected ${Buffer.from(stored).toString("hex")}`,
      );
    }
  }
  state.stage = OkvStage.Done;
  events.push({
    kind: "trailer",
    trailer: { digest: stored, totalDataBytes, dataFrameCount, indexOffset },
  });
}
