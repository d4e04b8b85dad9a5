import { invalidField } from "@opal/core";
import type { DeviceCapabilities } from "./gen/messages";

/**
 * The smallest non-zero `max_chunk_bytes` a Prefill or FetchKv request may ask for (`PF-14`),
 * unless the device's own `max_chunk_bytes` is smaller. Each chunk costs about 40 bytes of framing
 * (field tags, offsets, CRC, the gRPC prefix, an HTTP/2 frame header) and a message's worth of CPU
 * at both ends: 2-byte chunks turn a cache into 20 times its size on the wire and millions of
 * messages, so one caller could occupy the device's CPU; at 256 bytes the overhead stays near 15%.
 */
export const MIN_CHUNK_BYTES = 256;

/**
 * The chunk size a request negotiates (`PF-14`): the device's `preferredChunkBytes` when
 * `requested` is 0 or absent, else `requested`, which must be a whole number from
 * `min(MIN_CHUNK_BYTES, maxChunkBytes)` to `maxChunkBytes`; INVALID_ARGUMENT `INVALID_FIELD`
 * naming `max_chunk_bytes` otherwise.
 */
export function negotiateChunkBytes(
  requested: number | undefined,
  capabilities: Pick<DeviceCapabilities, "preferredChunkBytes" | "maxChunkBytes">,
): number {
  if (requested === undefined || requested === 0) return capabilities.preferredChunkBytes;
  const max = capabilities.maxChunkBytes;
  const min = Math.min(MIN_CHUNK_BYTES, max);
  if (!(Number.isSafeInteger(requested) && requested >= min && requested <= max)) {
    const description = `expected 0 (the device's preferred size) or ${min}..${max}, got ${requested}`;
    throw invalidField("max_chunk_bytes", description);
  }
  return requested;
}
