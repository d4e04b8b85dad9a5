/**
 * The device's prefix cache, keyed by the block-hash chain. Because each hash covers its whole
 * prefix (and the tenant-scoped salt), matching leading hashes is matching a cached prefix.
 */
export interface PrefixCache {
  /** How many leading blocks of `hashes` are cached. */
  matchBlocks(hashes: readonly Uint8Array[]): number;
  /** Records the blocks of a finished prefill, evicting the least recently used beyond capacity. */
  insert(hashes: readonly Uint8Array[]): void;
  readonly size: number;
}

/** Creates a prefix cache of at most `maxBlocks` block hashes. */
export function createPrefixCache(maxBlocks: number): PrefixCache {
  const blocks = new Set<string>();
  const key = (hash: Uint8Array) =>
    Buffer.from(hash.buffer, hash.byteOffset, hash.byteLength).toString("base64");
  return {
    get size() {
      return blocks.size;
    },
    matchBlocks(hashes) {
      let n = 0;
      for (const hash of hashes) {
        const k = key(hash);
        if (!blocks.has(k)) break;
        blocks.delete(k);
        blocks.add(k);
        n++;
      }
      return n;
    },
    insert(hashes) {
      for (const hash of hashes) {
        const k = key(hash);
        blocks.delete(k);
        blocks.add(k);
      }
      while (blocks.size > maxBlocks) blocks.delete(blocks.values().next().value as string);
    },
  };
}
