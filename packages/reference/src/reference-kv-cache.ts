import { Code, OpalError, Reason } from "@opal/core";
import type { ModelConfig } from "./model-config";

/**
 * The KV cache of the reference model: per layer, keys and values as f32 in NHD order
 * `[tokens][numKvHeads][headDim]`, keys stored after rotary embeddings (as vLLM stores them).
 * Only the first `numTokens` rows are meaningful; arrays have room for `capacityTokens` rows and are
 * replaced by larger ones when the cache grows, so do not keep references to them across calls
 * that append. Mutable: `decodeStep` appends in place.
 */
export interface ReferenceKvCache {
  /** Tokens held, i.e. the position of the next token. */
  numTokens: number;
  /** Rows allocated per layer; grows by doubling. */
  capacityTokens: number;
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  /** Per layer, `[capacityTokens][numKvHeads][headDim]` f32, rows `0..numTokens-1` valid. */
  keys: Float32Array[];
  /** Per layer, same shape as `keys`. */
  values: Float32Array[];
}

/** Options of {@link createReferenceKvCache}. */
export interface ReferenceKvCacheOptions {
  /**
   * Rows to allocate up front, an integer >= 0 (0 counts as 1); default 64. The cache grows
   * beyond it on demand.
   */
  readonly capacityTokens?: number;
}

/**
 * Creates an empty cache for a model with `config`. Throws INVALID_ARGUMENT (reason
 * `INVALID_FIELD`) when `capacityTokens` is not an integer >= 0.
 */
export function createReferenceKvCache(
  config: ModelConfig,
  options: ReferenceKvCacheOptions = {},
): ReferenceKvCache {
  const requested = options.capacityTokens ?? 64;
  if (!Number.isSafeInteger(requested) || requested < 0) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `capacityTokens must be an integer >= 0 (got ${requested})`,
      { reason: Reason.INVALID_FIELD },
    );
  }
  const capacityTokens = Math.max(1, requested);
  const row = config.numKeyValueHeads * config.headDim;
  const keys: Float32Array[] = [];
  const values: Float32Array[] = [];
  for (let l = 0; l < config.numHiddenLayers; l++) {
    keys.push(new Float32Array(capacityTokens * row));
    values.push(new Float32Array(capacityTokens * row));
  }
  return {
    numTokens: 0,
    capacityTokens,
    numLayers: config.numHiddenLayers,
    numKvHeads: config.numKeyValueHeads,
    headDim: config.headDim,
    keys,
    values,
  };
}

/**
 * Builds a cache from per-layer f32 arrays in NHD order (`[numTokens][numKvHeads][headDim]`, keys after
 * rotary), e.g. rebuilt from received KV bytes. The arrays are copied (the result owns its memory);
 * arrays longer than `numTokens` rows are read up to `numTokens` rows. Throws INVALID_ARGUMENT
 * (reason `INVALID_FIELD`) when the layer count or an array size does not match `config`.
 */
export function fromKvLayers(
  config: ModelConfig,
  keys: readonly Float32Array[],
  values: readonly Float32Array[],
  numTokens: number,
): ReferenceKvCache {
  const row = config.numKeyValueHeads * config.headDim;
  const mismatch = (message: string) =>
    new OpalError(Code.INVALID_ARGUMENT, message, { reason: Reason.INVALID_FIELD });
  if (!Number.isSafeInteger(numTokens) || numTokens < 0) {
    throw mismatch(`numTokens must be an integer >= 0 (got ${numTokens})`);
  }
  if (keys.length !== config.numHiddenLayers || values.length !== config.numHiddenLayers) {
    throw mismatch(
      `expected ${config.numHiddenLayers} layers of keys and values, got ${keys.length} and ${values.length}`,
    );
  }
  // Every array is checked before the cache is allocated: `numTokens` is trusted only once the
  // arrays show that many rows.
  for (let l = 0; l < config.numHiddenLayers; l++) {
    for (const [name, src] of [
      ["keys", keys[l]!],
      ["values", values[l]!],
    ] as const) {
      if (src.length < numTokens * row) {
        throw mismatch(
          `layer ${l} ${name} has ${src.length} floats (expected ${numTokens} tokens x ${config.numKeyValueHeads} heads x ${config.headDim} = ${numTokens * row})`,
        );
      }
    }
  }
  const cache = createReferenceKvCache(config, { capacityTokens: numTokens });
  for (let l = 0; l < config.numHiddenLayers; l++) {
    cache.keys[l]!.set(keys[l]!.subarray(0, numTokens * row));
    cache.values[l]!.set(values[l]!.subarray(0, numTokens * row));
  }
  cache.numTokens = numTokens;
  return cache;
}

/**
 * A new, independent cache holding the first `numTokens` rows of `cache` (default: all of them).
 * Use it to keep a prefix while continuing another copy.
 */
export function toKvPrefix(cache: ReferenceKvCache, numTokens = cache.numTokens): ReferenceKvCache {
  if (!Number.isSafeInteger(numTokens) || numTokens < 0 || numTokens > cache.numTokens) {
    throw new OpalError(
      Code.OUT_OF_RANGE,
      `prefix of ${numTokens} tokens out of range (cache holds ${cache.numTokens})`,
      { reason: Reason.RESUME_POSITION_INVALID },
    );
  }
  return copyKvRows(cache, numTokens, numTokens);
}

/** A copy of the first `numTokens` rows with room for `capacityTokens` rows. Internal. */
export function copyKvRows(
  cache: ReferenceKvCache,
  numTokens: number,
  capacityTokens: number,
): ReferenceKvCache {
  const row = cache.numKvHeads * cache.headDim;
  const capacity = Math.max(numTokens, capacityTokens, 1);
  const copy = (src: Float32Array) => {
    const dst = new Float32Array(capacity * row);
    dst.set(src.subarray(0, numTokens * row));
    return dst;
  };
  return {
    numTokens,
    capacityTokens: capacity,
    numLayers: cache.numLayers,
    numKvHeads: cache.numKvHeads,
    headDim: cache.headDim,
    keys: cache.keys.map(copy),
    values: cache.values.map(copy),
  };
}

/** Grows `cache` (by doubling) so it can hold `numTokens` rows; keeps existing rows. Internal. */
export function reserveKvCapacity(cache: ReferenceKvCache, numTokens: number): void {
  if (numTokens <= cache.capacityTokens) return;
  let capacity = cache.capacityTokens;
  while (capacity < numTokens) capacity *= 2;
  const row = cache.numKvHeads * cache.headDim;
  const grow = (src: Float32Array) => {
    const dst = new Float32Array(capacity * row);
    dst.set(src.subarray(0, cache.numTokens * row));
    return dst;
  };
  cache.keys = cache.keys.map(grow);
  cache.values = cache.values.map(grow);
  cache.capacityTokens = capacity;
}
