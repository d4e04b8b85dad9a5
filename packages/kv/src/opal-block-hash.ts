import { createHash } from "node:crypto";
import { KvFormatError } from "./kv-format-error";

const ROOT_LABEL = new TextEncoder().encode("opal.block-hash.v1");

/** Options of {@link computeOpalBlockHashes}. */
export interface OpalBlockHashOptions {
  /** Tokens per block (`kv_format.block_size_tokens`), >= 1. */
  readonly blockSizeTokens: number;
  /** The request's `cache_salt` (UTF-8, at most 256 bytes); default none. */
  readonly cacheSalt?: string;
}

/**
 * The protocol's block-hash chain (docs/protocol/prefix-hashing.md, PH-1), used for
 * `decoder_prefix.block_hashes` and device prefix caches:
 * `root = SHA-256("opal.block-hash.v1" ‖ u32le(B) ‖ u32le(len(salt)) ‖ salt)` and
 * `h[i] = SHA-256(h[i-1] ‖ u32le(tokens of block i))`, full blocks only, 32 bytes each. Unlike
 * {@link computeBlockHashes} (vLLM's sha256_cbor chain, for interop with vLLM's own hashes), it is
 * defined byte for byte by the protocol, so any language computes the same values. Token ids and
 * the block size are the protocol's uint32: OUT_OF_RANGE for anything else, so distinct prompts
 * never share a hash through a silent conversion. Memory is bounded by the tokens given.
 */
export function computeOpalBlockHashes(
  tokens: ArrayLike<number>,
  options: OpalBlockHashOptions,
): Uint8Array[] {
  const size = options.blockSizeTokens;
  if (!Number.isSafeInteger(size) || size < 1 || size > 0xffff_ffff) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `blockSizeTokens ${size}, expected an integer in [1, 4294967295]`,
    );
  }
  const full = Math.floor(tokens.length / size);
  for (let i = 0; i < full * size; i++) {
    const token = tokens[i];
    if (typeof token !== "number" || !Number.isInteger(token) || token < 0 || token > 0xffff_ffff) {
      throw new KvFormatError(
        "OUT_OF_RANGE",
        `token ${token} at index ${i} is not a uint32 token id`,
        { field: `tokens[${i}]` },
      );
    }
  }
  const salt = new TextEncoder().encode(options.cacheSalt ?? "");
  if (salt.byteLength > 256) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `cache_salt is ${salt.byteLength} bytes, expected at most 256`,
    );
  }
  const header = new Uint8Array(8);
  const view = new DataView(header.buffer);
  view.setUint32(0, size, true);
  view.setUint32(4, salt.byteLength, true);
  let parent: Uint8Array = createHash("sha256")
    .update(ROOT_LABEL)
    .update(header)
    .update(salt)
    .digest();
  const hashes: Uint8Array[] = [];
  if (full === 0) return hashes;
  const block = new Uint8Array(size * 4); // at most 4 bytes per token given
  const words = new DataView(block.buffer);
  for (let b = 0; b < full; b++) {
    for (let i = 0; i < size; i++) words.setUint32(i * 4, tokens[b * size + i] as number, true);
    parent = createHash("sha256").update(parent).update(block).digest();
    hashes.push(parent);
  }
  return hashes;
}
