import { Code, OpalError, Reason } from "@opal/core";
import type { PrefillDriver, PrefillRequest } from "@opal/driver";
import { computeOpalBlockHashes, type KvDescriptor } from "@opal/kv";
import { hasTargetOf } from "./has-target-of";

/** The errors {@link checkAcceptedDescriptor} made: the device broke the protocol, not the caller. */
const violations = new WeakSet<OpalError>();

/**
 * Checks the descriptor a device's `accepted` carries against the request it answers (PF-12,
 * PH-10): `dtype`, `scaleScheme`, `layout` and `blockSizeTokens` as requested; `headRange` as
 * requested (all heads when absent, `{0, 1}` for MLA); `tokenStart + tokenCount` the prompt length,
 * `tokenStart` 0 without a decoder prefix, `numTokens` with one, and with `blockHashes` the blocks
 * of the leading run of them that equals the prompt's own chain (PH-9, hashed here once per stream). Returns FAILED_PRECONDITION
 * DESCRIPTOR_MISMATCH naming the first differing field (`descriptor.dtype`), what the request
 * implies and what the device sent (also as metadata `field`, `expected`, `actual`); undefined when
 * it matches. Runs once per stream. The model's fingerprint, layer count and attention shape are
 * the model's, which the request does not state, so they are not checked here.
 */
export function checkAcceptedDescriptor(
  request: PrefillRequest,
  descriptor: KvDescriptor,
): OpalError | undefined {
  const format = request.kvFormat;
  for (const field of ["dtype", "scaleScheme", "layout", "blockSizeTokens"] as const) {
    if (descriptor[field] !== format[field])
      return mismatch(field, String(format[field]), String(descriptor[field]));
  }
  const heads =
    descriptor.attention.kind === "mla"
      ? { start: 0, count: 1 }
      : (format.headRange ?? { start: 0, count: descriptor.attention.numKvHeads });
  const got = descriptor.headRange;
  if (got?.start !== heads.start || got?.count !== heads.count)
    return mismatch("headRange", rangeText(heads), got ? rangeText(got) : "none");
  const promptTokens = request.promptTokenIds.length;
  const end = descriptor.tokenStart + descriptor.tokenCount;
  if (end !== promptTokens)
    return mismatch("tokenStart + tokenCount", `${promptTokens} (the prompt)`, String(end));
  const start = descriptor.tokenStart;
  const prefix = request.decoderPrefix;
  const block = format.blockSizeTokens;
  if (prefix?.numTokens) {
    if (start !== prefix.numTokens)
      return mismatch("tokenStart", `${prefix.numTokens} (decoderPrefix.numTokens)`, String(start));
  } else if (prefix?.blockHashes?.length) {
    const skipped = matchedBlocks(request, prefix.blockHashes) * block;
    if (start !== skipped)
      return mismatch(
        "tokenStart",
        `${skipped} (the leading decoderPrefix.blockHashes that match the prompt's)`,
        String(start),
      );
  } else if (start !== 0) {
    return mismatch("tokenStart", "0 (no decoderPrefix)", String(start));
  }
  return undefined;
}

/** True for an error {@link checkAcceptedDescriptor} returned: the device's fault, not the request's. */
export function isDescriptorViolation(error: OpalError): boolean {
  return violations.has(error);
}

/**
 * True when `error` is a descriptor violation and `device` is a pool (it has `targetOf`): the pool
 * avoids the device that failed, so another attempt goes elsewhere. A single device is not asked
 * again.
 */
export function retriesElsewhere(device: PrefillDriver, error: OpalError): boolean {
  return isDescriptorViolation(error) && hasTargetOf(device);
}

/**
 * PH-9: how many leading blocks the device skips for `hashes`: the run of them equal to the
 * prompt's own chain (request's salt and block size), capped so one token is always carried.
 * Hashes only the blocks that can match, once per stream.
 */
function matchedBlocks(request: PrefillRequest, hashes: readonly Uint8Array[]): number {
  const block = request.kvFormat.blockSizeTokens;
  const cap = Math.min(hashes.length, Math.floor((request.promptTokenIds.length - 1) / block));
  const ours = computeOpalBlockHashes(request.promptTokenIds.subarray(0, cap * block), {
    blockSizeTokens: block,
    ...(request.cacheSalt ? { cacheSalt: request.cacheSalt } : {}),
  });
  let k = 0;
  while (k < cap && sameBytes(ours[k]!, hashes[k]!)) k++;
  return k;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((byte, i) => byte === b[i]);
}

function mismatch(field: string, expected: string, actual: string): OpalError {
  const error = new OpalError(
    Code.FAILED_PRECONDITION,
    `protocol violation: the device's accepted descriptor.${field} is ${actual}, but the request implies ${expected}`,
    {
      reason: Reason.DESCRIPTOR_MISMATCH,
      metadata: { field: `descriptor.${field}`, expected, actual },
    },
  );
  violations.add(error);
  return error;
}

function rangeText(range: { readonly start: number; readonly count: number }): string {
  return `{start ${range.start}, count ${range.count}}`;
}
