import type { KvDescriptor } from "./descriptor";
import { KvFormatError } from "./kv-format-error";

/**
 * Checks the block table entries the cache's tokens use, before any byte moves: each must be a
 * block id in [0, numBlocks), and no two logical blocks may share a physical block. OUT_OF_RANGE
 * for a missing or outside id, INVALID_OFFSETS for a shared block; both name `blockTable`.
 */
export function checkBlockTable(
  descriptor: KvDescriptor,
  blockTable: ArrayLike<number>,
  blockSizeTokens: number,
  numBlocks: number,
): void {
  const first = Math.floor(descriptor.tokenStart / blockSizeTokens);
  const last = Math.floor((descriptor.tokenStart + descriptor.tokenCount - 1) / blockSizeTokens);
  const seen = new Map<number, number>();
  for (let logical = first; logical <= last; logical++) {
    const block = blockTable[logical];
    if (block === undefined || !Number.isInteger(block) || block < 0 || block >= numBlocks) {
      throw new KvFormatError(
        "OUT_OF_RANGE",
        `token ${Math.max(descriptor.tokenStart, logical * blockSizeTokens)}: block table entry ${logical} is ${block}, expected a block id in [0, ${numBlocks})`,
        { field: "blockTable" },
      );
    }
    const other = seen.get(block);
    if (other !== undefined) {
      throw new KvFormatError(
        "INVALID_OFFSETS",
        `block table entries ${other} and ${logical} are both block ${block} (overlap)`,
        { field: "blockTable" },
      );
    }
    seen.set(block, logical);
  }
}
