import { Code, OpalError, Reason } from "@opal/core";
import { cacheByteLength, type KvDescriptor } from "@opal/kv";

/**
 * Checks a decoded descriptor's wire `total_bytes` (when set) against the size its shape implies;
 * throws INVALID_ARGUMENT INVALID_FIELD naming `field.total_bytes` when they differ.
 */
export function checkTotalBytes(
  descriptor: KvDescriptor,
  wire: { readonly totalBytes?: number | null },
  field: string,
): void {
  const expected = cacheByteLength(descriptor);
  if (wire.totalBytes && Number(wire.totalBytes) !== expected) {
    const description = `expected ${expected} (from the shape), got ${wire.totalBytes}`;
    throw new OpalError(Code.INVALID_ARGUMENT, `${field}.total_bytes: ${description}`, {
      reason: Reason.INVALID_FIELD,
      fieldViolations: [{ field: `${field}.total_bytes`, description }],
    });
  }
}
