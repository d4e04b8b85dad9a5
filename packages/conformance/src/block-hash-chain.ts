import { createHash } from "node:crypto";

const ROOT_LABEL = new TextEncoder().encode("opal.block-hash.v1");

function u32le(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value >>> 0, true);
  return out;
}

/**
 * The OPAL block-hash chain of docs/protocol/prefix-hashing.md (`PH-1`), written from the
 * specification alone so that the suite does not trust any implementation it tests:
 * `root = SHA-256("opal.block-hash.v1" || u32le(B) || u32le(len(salt)) || salt)`,
 * `h[i] = SHA-256(h[i-1] || u32le(tokens of block i))`, full blocks only. 32 bytes each.
 */
export function computeOpalBlockHashes(
  tokens: ArrayLike<number>,
  blockSizeTokens: number,
  cacheSalt = "",
): Uint8Array[] {
  const salt = new TextEncoder().encode(cacheSalt);
  let parent: Uint8Array = createHash("sha256")
    .update(ROOT_LABEL)
    .update(u32le(blockSizeTokens))
    .update(u32le(salt.byteLength))
    .update(salt)
    .digest();
  const hashes: Uint8Array[] = [];
  const full = Math.floor(tokens.length / blockSizeTokens);
  for (let b = 0; b < full; b++) {
    const hash = createHash("sha256").update(parent);
    for (let i = b * blockSizeTokens; i < (b + 1) * blockSizeTokens; i++)
      hash.update(u32le(tokens[i]!));
    parent = hash.digest();
    hashes.push(parent);
  }
  return hashes;
}

/** Root of the chain (exported for the specification's test vectors). */
export function computeOpalBlockHashRoot(blockSizeTokens: number, cacheSalt = ""): Uint8Array {
  const salt = new TextEncoder().encode(cacheSalt);
  return createHash("sha256")
    .update(ROOT_LABEL)
    .update(u32le(blockSizeTokens))
    .update(u32le(salt.byteLength))
    .update(salt)
    .digest();
}
