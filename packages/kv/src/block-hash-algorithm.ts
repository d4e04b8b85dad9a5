import { createHash } from "node:crypto";
import { encode as encodeMsgpackItem } from "@msgpack/msgpack";
import { encode as encodeCborItem } from "cborg";
import xxhashAddon from "xxhash-addon";
import { encodePickle } from "./block-hash-pickle";
import { type BlockHashValue, checkBlockHashValue } from "./block-hash-value";
import { KvFormatError } from "./kv-format-error";

// A CommonJS native addon: Node's ESM loader sees only its default export.
const { XXHash128 } = xxhashAddon;

/**
 * vLLM's prefix-caching hash functions (`--prefix-caching-hash-algo`), as
 * `vllm/utils/hashing.py` defines them: the serialization of the hashed object, then SHA-256
 * (32-byte hashes) or XXH3-128 (16-byte hashes, Python's `xxhash.xxh3_128_digest`).
 *
 * - `sha256` (vLLM's default): `pickle.dumps(x, protocol=5)`;
 * - `sha256_cbor`, `xxhash_cbor`: `cbor2.dumps(x, canonical=True)`;
 * - `xxhash`: pickle, as `sha256`;
 * - `sha256_msgpack`, `xxhash_msgpack`: MessagePack as `msgspec.msgpack.Encoder().encode(x)`. These
 *   two come from vllm-project/vllm pull request #43789, still open when this was written: the
 *   pinned vLLM commit 002f10e0cfa1373a19a0d2756598a34b700d20e5 accepts only the first four
 *   (`PrefixCachingHashAlgo` in `vllm/config/cache.py`).
 */
export const VLLM_BLOCK_HASH_ALGORITHMS = [
  "sha256",
  "sha256_cbor",
  "xxhash",
  "xxhash_cbor",
  "sha256_msgpack",
  "xxhash_msgpack",
] as const;

/** One of {@link VLLM_BLOCK_HASH_ALGORITHMS}. */
export type VllmBlockHashAlgorithm = (typeof VLLM_BLOCK_HASH_ALGORITHMS)[number];

/**
 * Whether vLLM treats the algorithm as collision resistant. At the pinned commit
 * (`_NON_CRYPTO_HASH_FUNCTIONS` in `vllm/v1/core/kv_cache_utils.py`) the xxHash algorithms keep a
 * random per-process NONE_HASH seed unless PYTHONHASHSEED is set.
 */
export function isCryptographicBlockHash(algorithm: VllmBlockHashAlgorithm): boolean {
  return algorithm.startsWith("sha256");
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Canonical CBOR (RFC 8949 deterministic encoding, as Python's `cbor2.dumps(x, canonical=True)`)
 * of a {@link BlockHashValue}, arrays as CBOR arrays (Python tuples and lists alike).
 *
 * @throws KvFormatError OUT_OF_RANGE for a value that is not a {@link BlockHashValue}.
 */
export function encodeCbor(value: BlockHashValue): Uint8Array {
  checkBlockHashValue(value);
  // cborg's default encoding is deterministic: shortest integer and length forms, definite
  // lengths, byte strings for Uint8Array, as cbor2 (Python) writes with canonical=True; the types
  // of a block-hash value have no other choices to make. cborg, not the cbor2 npm package: about
  // 10x faster per block with the same bytes (docs/formats/vllm-block-hashes.md).
  return encodeCborItem(value);
}

/**
 * MessagePack of a {@link BlockHashValue} with the smallest integer and length forms, bytes as
 * `bin`, strings as `str` and arrays as arrays: the bytes of msgspec's encoder (and of Python
 * `msgpack.packb(x)`) for these types.
 *
 * @throws KvFormatError OUT_OF_RANGE for a value that is not a {@link BlockHashValue}.
 */
export function encodeMsgpack(value: BlockHashValue): Uint8Array {
  checkBlockHashValue(value);
  return encodeMsgpackItem(value);
}

/** The serialization `algorithm` hashes. */
export function serializeForBlockHash(
  algorithm: VllmBlockHashAlgorithm,
  value: BlockHashValue,
): Uint8Array {
  switch (algorithm) {
    case "sha256":
    case "xxhash":
      return encodePickle(value);
    case "sha256_cbor":
    case "xxhash_cbor":
      return encodeCbor(value);
    case "sha256_msgpack":
    case "xxhash_msgpack":
      return encodeMsgpack(value);
    default:
      throw new KvFormatError(
        "OUT_OF_RANGE",
        `block-hash algorithm ${JSON.stringify(algorithm)}, expected one of ${VLLM_BLOCK_HASH_ALGORITHMS.join(", ")}`,
        { field: "algorithm" },
      );
  }
}

/**
 * vLLM's hash function named `algorithm` applied to `value` (`get_hash_fn_by_name(algorithm)(x)`):
 * 32 bytes for the SHA-256 algorithms, 16 for the xxHash ones.
 *
 * @throws KvFormatError OUT_OF_RANGE for an unknown algorithm or a value that is not a
 *   {@link BlockHashValue}.
 */
export function vllmHash(algorithm: VllmBlockHashAlgorithm, value: BlockHashValue): Uint8Array {
  const bytes = asBuffer(serializeForBlockHash(algorithm, value));
  if (isCryptographicBlockHash(algorithm))
    return new Uint8Array(createHash("sha256").update(bytes).digest());
  return new Uint8Array(XXHash128.hash(bytes));
}

/** vLLM's `sha256_cbor(x)`: SHA-256 of the canonical CBOR of `x`. */
export function sha256Cbor(value: BlockHashValue): Uint8Array {
  return vllmHash("sha256_cbor", value);
}
