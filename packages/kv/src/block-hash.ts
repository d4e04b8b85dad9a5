import { createHash } from "node:crypto";
import { KvFormatError } from "./kv-format-error";

/** Options of {@link computeBlockHashes}. */
export interface BlockHashOptions {
  /** Tokens per block (vLLM's `block_size`); only full blocks are hashed. */
  readonly blockSizeTokens: number;
  /**
   * vLLM's `cache_salt`: mixed into the extra keys of the first block (as `(cacheSalt,)`) when
   * hashing starts at token 0 (no `parentHash`), so tenants with different salts share no prefix.
   */
  readonly cacheSalt?: string;
  /** Hash of the block before `tokens[0]` when continuing a chain; default the seed's NONE_HASH. */
  readonly parentHash?: Uint8Array;
  /**
   * The string vLLM reads from `PYTHONHASHSEED` to derive NONE_HASH = sha256_cbor(seed); default
   * "0". vLLM without PYTHONHASHSEED uses 32 random bytes per process (not reproducible anywhere).
   */
  readonly hashSeed?: string;
}

/** A CBOR item as vLLM's block hashing produces it (the subset this module encodes). */
type CborItem = number | string | Uint8Array | null | readonly CborItem[];

function head(major: number, value: number, out: number[]): void {
  const m = major << 5;
  if (value < 24) out.push(m | value);
  else if (value < 0x100) out.push(m | 24, value);
  else if (value < 0x10000) out.push(m | 25, value >> 8, value & 0xff);
  else if (value < 0x1_0000_0000)
    out.push(
      m | 26,
      (value >>> 24) & 0xff,
      (value >>> 16) & 0xff,
      (value >>> 8) & 0xff,
      value & 0xff,
    );
  else {
    const hi = Math.floor(value / 0x1_0000_0000);
    const lo = value >>> 0;
    out.push(m | 27, (hi >>> 24) & 0xff, (hi >>> 16) & 0xff, (hi >>> 8) & 0xff, hi & 0xff);
    out.push((lo >>> 24) & 0xff, (lo >>> 16) & 0xff, (lo >>> 8) & 0xff, lo & 0xff);
  }
}

function encodeItem(item: CborItem, out: number[]): void {
  if (item === null) out.push(0xf6);
  else if (typeof item === "number") {
    if (!Number.isSafeInteger(item))
      throw new KvFormatError("OUT_OF_RANGE", `token id ${item} is not a safe integer`);
    if (item >= 0) head(0, item, out);
    else head(1, -1 - item, out);
  } else if (typeof item === "string") {
    const bytes = new TextEncoder().encode(item);
    head(3, bytes.byteLength, out);
    for (const b of bytes) out.push(b);
  } else if (item instanceof Uint8Array) {
    head(2, item.byteLength, out);
    for (const b of item) out.push(b);
  } else {
    head(4, item.length, out);
    for (const child of item) encodeItem(child, out);
  }
}

/**
 * Canonical CBOR (RFC 8949 deterministic encoding, as Python's `cbor2.dumps(x, canonical=True)`)
 * of integers, text, bytes, null and arrays (Python tuples and lists).
 */
export function encodeCbor(item: CborItem): Uint8Array {
  const out: number[] = [];
  encodeItem(item, out);
  return Uint8Array.from(out);
}

/** vLLM's `sha256_cbor(x)`: SHA-256 of the canonical CBOR of `x`. */
export function sha256Cbor(item: CborItem): Uint8Array {
  return new Uint8Array(createHash("sha256").update(encodeCbor(item)).digest());
}

/** vLLM's NONE_HASH for `PYTHONHASHSEED=seed` with sha256_cbor: `sha256_cbor(seed)` (32 bytes). */
export function noneHashOf(seed: string): Uint8Array {
  return sha256Cbor(seed);
}

/**
 * vLLM's `hash_block_tokens` with sha256_cbor: `sha256_cbor((parentHash, tuple(tokens),
 * extraKeys))`, `extraKeys` null when there are none.
 */
export function hashBlockTokens(
  parentHash: Uint8Array,
  tokens: ArrayLike<number>,
  extraKeys: readonly (string | number)[] | null = null,
): Uint8Array {
  return sha256Cbor([parentHash, Array.from(tokens), extraKeys]);
}

/**
 * The vLLM block-hash chain (hash function `sha256_cbor`) of the full blocks of `tokens`: entry i
 * is the hash of blocks 0..i, 32 bytes each. A trailing partial block is not hashed, as in vLLM.
 * Matches vLLM run with `--prefix-caching-hash-algo sha256_cbor` and `PYTHONHASHSEED=hashSeed`
 * for a text-only request without LoRA (LoRA and multimodal extra keys are not modelled).
 */
export function computeBlockHashes(
  tokens: ArrayLike<number>,
  options: BlockHashOptions,
): Uint8Array[] {
  const size = options.blockSizeTokens;
  if (!Number.isSafeInteger(size) || size < 1) {
    throw new KvFormatError("OUT_OF_RANGE", `blockSizeTokens ${size}, expected an integer >= 1`);
  }
  let parent = options.parentHash ?? noneHashOf(options.hashSeed ?? "0");
  const salted = options.parentHash === undefined && options.cacheSalt ? [options.cacheSalt] : null;
  const hashes: Uint8Array[] = [];
  const full = Math.floor(tokens.length / size);
  for (let b = 0; b < full; b++) {
    const block = Array.prototype.slice.call(tokens, b * size, (b + 1) * size) as number[];
    parent = hashBlockTokens(parent, block, b === 0 ? salted : null);
    hashes.push(parent);
  }
  return hashes;
}
