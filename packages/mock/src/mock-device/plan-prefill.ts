import type { PrefillRequest, ValidatedPrefill } from "@opal/driver";
import { computeOpalBlockHashes, type KvDescriptor, toHex } from "@opal/kv";
import { decoderPrefixTokens } from "../decoder-prefix-tokens";
import type { MockModel } from "../mock-model";
import type { MockDeviceState } from "./mock-device-state";

/** What a prefill will produce, decided before any compute. */
export interface PrefillPlan {
  readonly model: MockModel;
  /** The cache to produce: the model's fields, the requested format and token range. */
  readonly descriptor: KvDescriptor;
  /** The prompt's prefix-cache keys, one per full block: tenant, model and the salted chain. */
  readonly hashes: readonly string[];
  /** Prompt tokens found in the prefix cache (always less than the prompt). */
  readonly hitTokens: number;
  /** Prompt tokens the decoder holds, left out of the cache. */
  readonly decoderSkip: number;
}

/** Plans a validated prefill of `model` for `tenant`; reads the prefix cache, changes nothing. */
export function planPrefill(
  state: MockDeviceState,
  prefill: {
    readonly request: PrefillRequest;
    readonly valid: ValidatedPrefill;
    readonly model: MockModel;
    readonly tenant: string;
  },
): PrefillPlan {
  const { request, valid, model, tenant } = prefill;
  const tokens = request.promptTokenIds;
  const blockSize = request.kvFormat.blockSizeTokens;
  // PH-3: entries are keyed by tenant, model and the salted chain, so no hit crosses them.
  const hashes = computeOpalBlockHashes(tokens, {
    blockSizeTokens: blockSize,
    ...(request.cacheSalt ? { cacheSalt: request.cacheSalt } : {}),
  }).map((h) => `${tenant}\0${model.info.fingerprint}\0${toHex(h)}`);
  const decoderSkip = decoderPrefixTokens(request, valid.decoderPrefixTokens, tokens, blockSize);
  const hitTokens = Math.min(state.prefixCache.matchBlocks(hashes) * blockSize, tokens.length - 1);
  const descriptor: KvDescriptor = {
    modelFingerprint: model.info.fingerprint,
    numLayers: model.info.numLayers,
    attention: model.info.attention,
    headRange: valid.headRange,
    dtype: request.kvFormat.dtype,
    scaleScheme: request.kvFormat.scaleScheme,
    layout: request.kvFormat.layout,
    tokenStart: decoderSkip,
    tokenCount: tokens.length - decoderSkip,
    blockSizeTokens: blockSize,
    numerics: state.profile.numerics,
  };
  return { model, descriptor, hashes, hitTokens, decoderSkip };
}
