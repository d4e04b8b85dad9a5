/**
 * The device's prefix cache, keyed by `(tenant, model fingerprint, h[i])` (PH-3) where `h[i]` is
 * the protocol's block-hash chain under the request's salt. Each hash covers its whole prefix, so
 * matching leading keys is matching a cached prefix.
 */
export interface PrefixCache {
  /** How many leading blocks of `keys` are cached. */
  matchBlocks(keys: readonly string[]): number;
  /** Records the blocks of a finished prefill, evicting the least recently used beyond capacity. */
  insert(keys: readonly string[]): void;
  /** Drops every block of the model with `fingerprint` (it was unloaded, MD-18). */
  dropModel(fingerprint: string): void;
  readonly size: number;
}

/** Creates a prefix cache of at most `maxBlocks` block hashes. */
export function createPrefixCache(maxBlocks: number): PrefixCache {
  const blocks = new Set<string>();
  return {
    get size() {
      return blocks.size;
    },
    matchBlocks(keys) {
      let n = 0;
      for (const k of keys) {
        if (!blocks.has(k)) break;
        blocks.delete(k);
        blocks.add(k);
        n++;
      }
      return n;
    },
    insert(keys) {
      for (const k of keys) {
        blocks.delete(k);
        blocks.add(k);
      }
      while (blocks.size > maxBlocks) blocks.delete(blocks.values().next().value as string);
    },
    dropModel(fingerprint) {
      const marker = `\0${fingerprint}\0`;
      for (const k of blocks) if (k.includes(marker)) blocks.delete(k);
    },
  };
}
