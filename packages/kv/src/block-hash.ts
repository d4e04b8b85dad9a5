import {
  isCryptographicBlockHash,
  VLLM_BLOCK_HASH_ALGORITHMS,
  type VllmBlockHashAlgorithm,
  vllmHash,
} from "./block-hash-algorithm";
import {
  type BlockExtraKeySource,
  blockExtraKeys,
  type VllmMultimodalFeature,
} from "./block-hash-extra-keys";
import type { BlockHashValue } from "./block-hash-value";
import { KvFormatError } from "./kv-format-error";

// Written from vllm-project/vllm at commit 002f10e0cfa1373a19a0d2756598a34b700d20e5:
// vllm/v1/core/kv_cache_utils.py (init_none_hash, resolve_none_hash_seed, hash_block_tokens,
// generate_block_hash_extra_keys, get_request_block_hasher, maybe_convert_block_hash) and
// vllm/config/cache.py (PrefixCachingHashAlgo, default "sha256").

/**
 * The seed vLLM derives NONE_HASH from when PYTHONHASHSEED is unset and the algorithm is
 * cryptographic (`DEFAULT_NONE_HASH_SEED` in `vllm/v1/core/kv_cache_utils.py`), so independent
 * processes agree on block hashes without configuration.
 */
export const VLLM_DEFAULT_NONE_HASH_SEED = "vllm-none-hash";

/** Options of {@link computeBlockHashes}. Positions are request positions (token 0 = first). */
export interface BlockHashOptions extends BlockExtraKeySource {
  /** Tokens per block (vLLM's `hash_block_size`, the `block_size` of one KV cache group). */
  readonly blockSizeTokens: number;
  /** vLLM's `--prefix-caching-hash-algo`; default "sha256", vLLM's default. */
  readonly algorithm?: VllmBlockHashAlgorithm;
  /**
   * The PYTHONHASHSEED value vLLM runs with (NONE_HASH = hash(seed as a str)). Default: vLLM's
   * {@link VLLM_DEFAULT_NONE_HASH_SEED} for the SHA-256 algorithms; required for the xxHash ones,
   * for which vLLM without PYTHONHASHSEED draws a random per-process seed no one else can know.
   */
  readonly hashSeed?: string;
  /** NONE_HASH itself (e.g. advertised by a vLLM peer), instead of deriving it from a seed. */
  readonly noneHash?: Uint8Array;
  /** Hash of the block ending at `firstTokenIndex`, to continue a chain; default NONE_HASH. */
  readonly parentHash?: Uint8Array;
  /**
   * Request position of `tokens[0]`: 0 (default) or, with `parentHash`, a positive multiple of
   * `blockSizeTokens`. Extra keys are placed by request position (salt on the block at 0,
   * multimodal offsets, prompt-embedding rows), and continuing blocks consider only the last
   * multimodal input, as vLLM does for blocks completed by generated tokens.
   */
  readonly firstTokenIndex?: number;
}

function fail(field: string, message: string): never {
  throw new KvFormatError("OUT_OF_RANGE", message, { field });
}

/** Byte length of the hashes of `algorithm`: 32 (SHA-256) or 16 (XXH3-128). */
export function blockHashByteLength(algorithm: VllmBlockHashAlgorithm): number {
  return isCryptographicBlockHash(algorithm) ? 32 : 16;
}

function checkAlgorithm(algorithm: VllmBlockHashAlgorithm): void {
  if (!VLLM_BLOCK_HASH_ALGORITHMS.includes(algorithm))
    fail(
      "algorithm",
      `algorithm ${JSON.stringify(algorithm)}, expected one of ${VLLM_BLOCK_HASH_ALGORITHMS.join(", ")}`,
    );
}

function checkHash(field: string, hash: Uint8Array, algorithm: VllmBlockHashAlgorithm): void {
  const expected = blockHashByteLength(algorithm);
  if (!(hash instanceof Uint8Array) || hash.byteLength !== expected)
    fail(field, `${field} has ${hash?.byteLength} bytes, expected ${expected} for ${algorithm}`);
}

/**
 * vLLM's NONE_HASH (the parent of a chain's first block) for PYTHONHASHSEED `seed`:
 * `hash_fn(seed)`, the algorithm's hash of the seed as a Python `str`.
 */
export function noneHashOf(seed: string, algorithm: VllmBlockHashAlgorithm = "sha256"): Uint8Array {
  checkAlgorithm(algorithm);
  return vllmHash(algorithm, seed);
}

/**
 * vLLM's `hash_block_tokens`: `hash_fn((parentHash, tuple(tokens), extraKeys))`, `extraKeys` null
 * when the block has none. Default algorithm "sha256".
 */
export function hashBlockTokens(
  parentHash: Uint8Array,
  tokens: ArrayLike<number>,
  extraKeys: readonly BlockHashValue[] | null = null,
  algorithm: VllmBlockHashAlgorithm = "sha256",
): Uint8Array {
  checkAlgorithm(algorithm);
  return vllmHash(algorithm, [parentHash, Array.from(tokens), extraKeys]);
}

function resolveNoneHash(options: BlockHashOptions, algorithm: VllmBlockHashAlgorithm): Uint8Array {
  if (options.noneHash !== undefined) {
    checkHash("noneHash", options.noneHash, algorithm);
    return options.noneHash;
  }
  if (options.hashSeed !== undefined) return noneHashOf(options.hashSeed, algorithm);
  if (isCryptographicBlockHash(algorithm))
    return noneHashOf(VLLM_DEFAULT_NONE_HASH_SEED, algorithm);
  return fail(
    "hashSeed",
    `${algorithm} needs hashSeed (the PYTHONHASHSEED vLLM runs with) or noneHash: without ` +
      "PYTHONHASHSEED vLLM seeds xxHash chains with random bytes per process",
  );
}

function checkFeatures(features: readonly VllmMultimodalFeature[]): void {
  let previous = 0;
  features.forEach((f, i) => {
    const field = `multimodal[${i}]`;
    if (typeof f.identifier !== "string") fail(field, `${field}.identifier is not a string`);
    if (!Number.isSafeInteger(f.offset) || f.offset < previous || f.offset < 0)
      fail(field, `${field}.offset ${f.offset}, expected an integer >= ${previous} (sorted)`);
    if (!Number.isSafeInteger(f.length) || f.length < 1)
      fail(field, `${field}.length ${f.length}, expected an integer >= 1`);
    previous = f.offset;
  });
}

function checkOptions(tokens: ArrayLike<number>, options: BlockHashOptions): number {
  const size = options.blockSizeTokens;
  if (!Number.isSafeInteger(size) || size < 1)
    fail("blockSizeTokens", `blockSizeTokens ${size}, expected an integer >= 1`);
  const first = options.firstTokenIndex ?? 0;
  if (options.parentHash === undefined ? first !== 0 : !(first > 0 && first % size === 0))
    fail(
      "firstTokenIndex",
      `firstTokenIndex ${first}, expected ${options.parentHash === undefined ? "0 without parentHash" : `a positive multiple of ${size} with parentHash`}`,
    );
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i] as number;
    if (!Number.isSafeInteger(t) || t < 0)
      fail(`tokens[${i}]`, `token id ${t} at ${i}, expected an integer >= 0`);
  }
  checkFeatures(options.multimodal ?? []);
  const embeds = options.promptEmbeds;
  if (embeds !== undefined) {
    const row = embeds.bytesPerToken;
    if (!Number.isSafeInteger(row) || row < 1 || embeds.bytes.byteLength % row !== 0)
      fail(
        "promptEmbeds",
        `promptEmbeds has ${embeds.bytes.byteLength} bytes and bytesPerToken ${row}, expected a whole number of rows`,
      );
  }
  return first;
}

/**
 * vLLM's block-hash chain (`get_request_block_hasher`) over the full blocks of `tokens`: entry i
 * is the hash of the block at request positions `[first + i·B, first + (i+1)·B)` chained to all
 * before it, each `hash_fn((parent, tuple(block tokens), extra_keys))` with the extra keys vLLM
 * derives (LoRA name, multimodal `(identifier, offset)`, `cache_salt` on the first block,
 * prompt-embedding SHA-256). A trailing partial block is not hashed. 32-byte hashes for the
 * SHA-256 algorithms, 16-byte for the xxHash ones; {@link kvEventBlockHash} gives the 64-bit
 * integers vLLM's KV events carry. See docs/formats/vllm-block-hashes.md.
 *
 * @throws KvFormatError OUT_OF_RANGE (field named) for bad options, tokens or hash lengths, or an
 *   xxHash algorithm without `hashSeed`/`noneHash`.
 */
export function computeBlockHashes(
  tokens: ArrayLike<number>,
  options: BlockHashOptions,
): Uint8Array[] {
  const algorithm = options.algorithm ?? "sha256";
  checkAlgorithm(algorithm);
  const first = checkOptions(tokens, options);
  if (options.parentHash !== undefined) checkHash("parentHash", options.parentHash, algorithm);
  let parent = options.parentHash ?? resolveNoneHash(options, algorithm);
  const size = options.blockSizeTokens;
  let multimodalIndex = first > 0 ? -1 : 0;
  const hashes: Uint8Array[] = [];
  for (let b = 0; (b + 1) * size <= tokens.length; b++) {
    const start = first + b * size;
    const [extraKeys, next] = blockExtraKeys(options, start, start + size, multimodalIndex);
    multimodalIndex = next;
    const block = Array.prototype.slice.call(tokens, b * size, (b + 1) * size) as number[];
    parent = vllmHash(algorithm, [parent, block, extraKeys]);
    hashes.push(parent);
  }
  return hashes;
}

/**
 * The form vLLM's KV events (`BlockStored.block_hashes`, `parent_block_hash`, `BlockRemoved`) give
 * a block hash with `VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1` (the default): `maybe_convert_block_hash`,
 * `int.from_bytes(hash, "big") & (2**64 - 1)`, i.e. the last 8 bytes as an unsigned big-endian
 * integer.
 */
export function kvEventBlockHash(hash: Uint8Array): bigint {
  let value = 0n;
  for (const byte of hash.subarray(Math.max(0, hash.byteLength - 8)))
    value = (value << 8n) | BigInt(byte);
  return value;
}
