import { cacheByteLength } from "@opal/kv";
import type { ModelInfo, PrefillRequest } from "./gen/messages";

/**
 * Bytes of the cache a prefill of `request` on `model` produces for `tokenCount` tokens (default
 * the whole prompt; fewer when the decoder holds a prefix), in the request's format and head range
 * (default all heads; one for MLA). What a shared-memory region must hold (PF-43). Throws a
 * `KvFormatError` for a dtype that does not exist.
 */
export function prefillCacheByteLength(
  request: Pick<PrefillRequest, "kvFormat" | "promptTokenIds">,
  model: Pick<ModelInfo, "numLayers" | "attention">,
  tokenCount = request.promptTokenIds.length,
): number {
  const a = model.attention;
  return cacheByteLength({
    numLayers: model.numLayers,
    attention: a,
    headRange:
      a.kind === "mla"
        ? { start: 0, count: 1 }
        : (request.kvFormat.headRange ?? { start: 0, count: a.numKvHeads }),
    dtype: request.kvFormat.dtype,
    scaleScheme: request.kvFormat.scaleScheme,
    tokenCount,
  });
}
