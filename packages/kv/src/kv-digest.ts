import xxhashAddon from "xxhash-addon";
import { partsOf } from "./descriptor";
import type { KvCache } from "./kv-cache";

// A CommonJS native addon: Node's ESM loader sees only its default export.
const { XXHash128 } = xxhashAddon;

/** Byte length of the whole-cache digest (XXH3-128). */
export const KV_DIGEST_BYTE_LENGTH = 16;

/** XXH3 seed 0, as the 8-byte buffer `xxhash-addon` takes. */
const SEED_ZERO = Buffer.alloc(8);

/**
 * Incremental whole-cache digest: XXH3-128 (seed 0) over the bytes of every part in canonical
 * order (layer 0..n-1, parts of `partsOf` in order, offsets increasing), as its 16-byte canonical
 * (big-endian) form, the same bytes as Python's `xxhash.xxh3_128().digest()`. Feeding the same
 * bytes in chunks of any size gives the same digest, so it is independent of chunk and frame sizes.
 *
 * XXH3-128 and not SHA-256: the digest is checked on every byte of every transfer, and SHA-256
 * (about 1.5 GB/s here) cost more than the transport itself, where XXH3 runs near memory speed
 * (about 20 GB/s, native). Corruption is caught by each chunk's CRC32C; the digest proves that
 * the assembled bytes (across resumes, files and relays) are the device's cache. It is not a
 * cryptographic commitment; see docs/protocol/prefill.md §7.
 */
export interface KvDigest {
  /** Feeds the next bytes of the canonical sequence. */
  update(bytes: Uint8Array): void;
  /** Ends the digest and returns its 16 bytes; the object may not be used afterwards. */
  digest(): Uint8Array;
}

/** Creates an empty {@link KvDigest}. */
export function createKvDigest(): KvDigest {
  const hash = new XXHash128(SEED_ZERO);
  return {
    update(bytes) {
      hash.update(
        Buffer.isBuffer(bytes)
          ? bytes
          : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      );
    },
    digest() {
      const out = hash.digest();
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    },
  };
}

/** The {@link KvDigest} of a whole cache (16 bytes). */
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
