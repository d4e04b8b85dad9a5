import { toHex } from "@opal/kv";
import { describe, expect, it } from "vitest";
import { computeOpalBlockHashes, computeOpalBlockHashRoot } from "../src/block-hash-chain";

// The test vectors of docs/protocol/prefix-hashing.md (B = 4, tokens 1..9).
const VECTORS = [
  {
    salt: "",
    root: "fe8c87b507d29b5c7288f7ea9e10d416d14e583351e814d9ac86b4fdfc2a3673",
    h: [
      "63ef882de4e1a5b2568f56d5e2197e95e489955ba374fbf857d01e6f3d3490ba",
      "e79da6ed13bb3e90c3d8fa6bee03a737c2ad4ade311fb7386680d7673976ce14",
    ],
  },
  {
    salt: "tenant-a",
    root: "6033bd94f938767f83cc4562e50e5b7a2a7f9d0a05dd4aaee70be9df8aaf4841",
    h: [
      "151916c2fce3215b7e495878b7137feb0873be36b34797cd09e8f8516a573d19",
      "110854aefc9fd7617accb9afe74c8d01bd7256467683d9075713043f81deec2a",
    ],
  },
];

describe("computeOpalBlockHashes (PH-1)", () => {
  for (const v of VECTORS) {
    it(`matches the specification's vectors with salt ${JSON.stringify(v.salt)}`, () => {
      expect(toHex(computeOpalBlockHashRoot(4, v.salt))).toBe(v.root);
      expect(computeOpalBlockHashes([1, 2, 3, 4, 5, 6, 7, 8, 9], 4, v.salt).map(toHex)).toEqual(
        v.h,
      );
    });
  }
});
