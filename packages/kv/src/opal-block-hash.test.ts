import { describe, expect, it } from "vitest";
import { computeOpalBlockHashes } from "./opal-block-hash";

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

describe("computeOpalBlockHashes", () => {
  it("matches the test vectors of docs/protocol/prefix-hashing.md", () => {
    const tokens = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    expect(computeOpalBlockHashes(tokens, { blockSizeTokens: 4 }).map(hex)).toEqual([
      "63ef882de4e1a5b2568f56d5e2197e95e489955ba374fbf857d01e6f3d3490ba",
      "e79da6ed13bb3e90c3d8fa6bee03a737c2ad4ade311fb7386680d7673976ce14",
    ]);
    expect(
      computeOpalBlockHashes(tokens, { blockSizeTokens: 4, cacheSalt: "tenant-a" }).map(hex),
    ).toEqual([
      "151916c2fce3215b7e495878b7137feb0873be36b34797cd09e8f8516a573d19",
      "110854aefc9fd7617accb9afe74c8d01bd7256467683d9075713043f81deec2a",
    ]);
  });

  it("is prefix-consistent and hashes full blocks only", () => {
    const long = Array.from({ length: 70 }, (_, i) => i * 3);
    const a = computeOpalBlockHashes(long, { blockSizeTokens: 16 });
    const b = computeOpalBlockHashes(long.slice(0, 40), { blockSizeTokens: 16 });
    expect(a).toHaveLength(4);
    expect(b.map(hex)).toEqual(a.slice(0, 2).map(hex));
  });

  it("rejects a bad block size and an oversized salt", () => {
    expect(() => computeOpalBlockHashes([1], { blockSizeTokens: 0 })).toThrow(/blockSizeTokens 0/);
    expect(() =>
      computeOpalBlockHashes([1], { blockSizeTokens: 1, cacheSalt: "x".repeat(257) }),
    ).toThrow(/at most 256/);
    expect(() => computeOpalBlockHashes([1], { blockSizeTokens: 2 ** 32 })).toThrow(
      /blockSizeTokens 4294967296/,
    );
  });

  it("allocates nothing for a huge block size that no prompt fills", () => {
    expect(computeOpalBlockHashes([1, 2, 3], { blockSizeTokens: 2 ** 32 - 1 })).toEqual([]);
  });

  it("rejects token ids that are not uint32 instead of aliasing them", () => {
    // -1 would otherwise hash as 4294967295, 2^32 as 0 and 1.5 as 1.
    for (const token of [-1, 2 ** 32, 1.5, Number.NaN]) {
      expect(() => computeOpalBlockHashes([7, token], { blockSizeTokens: 2 })).toThrow(
        /at index 1 is not a uint32 token id/,
      );
    }
    expect(computeOpalBlockHashes([7, 2 ** 32 - 1], { blockSizeTokens: 2 })).toHaveLength(1);
  });
});
