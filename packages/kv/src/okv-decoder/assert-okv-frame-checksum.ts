import { KvFormatError } from "../kv-format-error";
import { crc32cOfPayload, hex32 } from "../okv-format";
import type { OkvFrame } from "./okv-decoder-state";

/** Throws CHECKSUM_MISMATCH when `payload`'s CRC32C is not the one `frame` stores. */
export function assertOkvFrameChecksum(frame: OkvFrame, payload: Uint8Array): void {
  const actual = crc32cOfPayload(payload);
  if (actual !== frame.crc) {
    throw new KvFormatError(
      "CHECKSUM_MISMATCH",
      `frame type ${frame.type} at offset ${frame.at}: crc32c 0x${hex32(actual)}, expected 0x${hex32(frame.crc)}`,
    );
  }
}
