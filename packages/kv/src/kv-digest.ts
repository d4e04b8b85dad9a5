import { createHash, type Hash } from "node:crypto";
import { partsOf } from "./descriptor";
import type { KvCache } from "./kv-cache";

/** Byte length of the whole-cache digest (SHA-256). */
export const KV_DIGEST_BYTE_LENGTH = 32;

/**
 * Incremental whole-cache digest: SHA-256 over the bytes of every part in canonical order (layer
 * 0..n-1, parts of `partsOf` in order, offsets increasing). Feeding the same bytes in chunks of any
 * size gives the same digest, so it is independent of chunk and frame sizes.
 */
export interface KvDigest {
  /** Feeds the next bytes of the canonical sequence. */
  update(bytes: Uint8Array): void;
  /** Ends the digest and returns its 32 bytes; the object may not be used afterwards. */
  digest(): Uint8Array;
}

/** Creates an empty {@link KvDigest}. */
export function createKvDigest(): KvDigest {
  const hash: Hash = createHash("sha256");
  return {
    update(bytes) {
      hash.update(bytes);
    },
    digest() {
      const out = hash.digest();
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    },
  };
}

/** The {@link KvDigest} of a whole cache (32 bytes). */
export function digestKvCache(cache: KvCache): Uint8Array {
  const digest = createKvDigest();
  for (let layer = 0; layer < cache.descriptor.numLayers; layer++) {
    for (const part of partsOf(cache.descriptor)) digest.update(cache.part(layer, part));
  }
  return digest.digest();
}

/** Lower-case hex of `bytes`, e.g. for logging a digest or block hash. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}
