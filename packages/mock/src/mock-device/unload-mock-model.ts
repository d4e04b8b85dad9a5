import type { MockDeviceState } from "./mock-device-state";

/**
 * Unloads `modelId`; its prefix-cache entries go too, unless another loaded id has the same
 * weights (MD-18). `wasLoaded` is false for an id not loaded.
 */
export function unloadMockModel(state: MockDeviceState, modelId: string): { wasLoaded: boolean } {
  const model = state.models.get(modelId);
  state.models.delete(modelId);
  const fingerprint = model?.info.fingerprint;
  if (fingerprint && ![...state.models.values()].some((m) => m.info.fingerprint === fingerprint))
    state.prefixCache.dropModel(fingerprint);
  return { wasLoaded: model !== undefined };
}
