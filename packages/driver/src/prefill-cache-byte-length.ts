import { cacheByteLength, type KvHeadRange } from "@opal/kv";
import type { ModelInfo } from "./model-info";
import type { PrefillRequest } from "./prefill-request";

/**
 * Bytes of the cache a prefill of `request` on `model` produces for `tokenCount` tokens (default
 * the whole prompt; fewer when the decoder holds a prefix), in the request's format and head range
 * (default all heads; one for MLA). What a shared-memory region must hold (PF-43). Throws a
 * `KvFormatError` for a format the model cannot have.
 */
export function prefillCacheByteLength(
  request: Pick<PrefillRequest, "kvFormat" | "promptTokenIds">,
  model: Pick<ModelInfo, "fingerprint" | "numLayers" | "attention">,
  tokenCount = request.promptTokenIds.length,
): number {
  const a = model.attention;
  const headRange: KvHeadRange =
    a.kind === "mla"
      ? { start: 0, count: 1 }
      : (request.kvFormat.headRange ?? { start: 0, count: a.numKvHeads });
  return cacheByteLength({
    modelFingerprint: model.fingerprint,
    numLayers: model.numLayers,
    attention: a,
    headRange,
    dtype: request.kvFormat.dtype,
    scaleScheme: request.kvFormat.scaleScheme,
    layout: request.kvFormat.layout,
    tokenStart: 0,
    tokenCount,
    blockSizeTokens: request.kvFormat.blockSizeTokens,
    numerics: {
      deviceKind: "reference",
      precisionPath: "",
      bitExact: true,
      maxAbsError: 0,
      maxRelError: 0,
    },
  });
}
