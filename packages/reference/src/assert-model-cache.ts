import { Code, OpalError, Reason } from "@opal/core";
import type { ModelConfig } from "./model-config";
import type { ReferenceKvCache } from "./reference-kv-cache";

/**
 * Throws INVALID_ARGUMENT `INVALID_FIELD` when `cache` is not of the model's shape (layers, KV
 * heads, head dimension).
 */
export function assertModelCache(config: ModelConfig, cache: ReferenceKvCache): void {
  if (
    cache.numLayers !== config.numHiddenLayers ||
    cache.numKvHeads !== config.numKeyValueHeads ||
    cache.headDim !== config.headDim
  ) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `cache has ${cache.numLayers} layers x ${cache.numKvHeads} KV heads x ${cache.headDim} dims (model has ${config.numHiddenLayers} x ${config.numKeyValueHeads} x ${config.headDim})`,
      { reason: Reason.INVALID_FIELD },
    );
  }
}
