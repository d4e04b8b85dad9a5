import type { PrefillRequest } from "@opal/driver";
import { computeOpalBlockHashes, toHex } from "@opal/kv";

/** Most prefix keys a pool remembers; past it the oldest `AFFINITY_EVICTION` are forgotten. */
const MAX_AFFINITY_KEYS = 100_000;
const AFFINITY_EVICTION = 10_000;

/**
 * The prefix keys of `request`, one per full block of its prompt, shortest prefix first: the model
 * and the salted OPAL block hash, as devices cache prefixes by model as well as by hash (PH-3).
 */
export function prefixKeysOf(request: PrefillRequest): string[] {
  return computeOpalBlockHashes(request.promptTokenIds, {
    blockSizeTokens: request.kvFormat.blockSizeTokens || 16,
    ...(request.cacheSalt ? { cacheSalt: request.cacheSalt } : {}),
  }).map((hash) => `${request.modelId}\n${toHex(hash)}`);
}

/** Records that `target` now holds the prefixes `keys` (bounded: the oldest keys are forgotten). */
export function rememberPrefixes(
  affinity: Map<string, string>,
  keys: readonly string[],
  target: string,
): void {
  for (const key of keys) affinity.set(key, target);
  if (affinity.size > MAX_AFFINITY_KEYS)
    for (const key of [...affinity.keys()].slice(0, AFFINITY_EVICTION)) affinity.delete(key);
}
