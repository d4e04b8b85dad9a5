import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  computeBlockHashes,
  encodeCbor,
  encodePickle,
  hashBlockTokens,
  isKvFormatError,
  kvEventBlockHash,
  noneHashOf,
  toHex,
  VLLM_DEFAULT_NONE_HASH_SEED,
  vllmHash,
} from "./index";

const sha256 = (bytes: Uint8Array) => new Uint8Array(createHash("sha256").update(bytes).digest());

function reasonOf(run: () => unknown): string | undefined {
  try {
    run();
  } catch (e) {
    if (isKvFormatError(e)) return `${e.reason} ${e.fieldViolations[0]?.field ?? ""}`;
    throw e;
  }
  return undefined;
}

describe("vLLM block hashes", () => {
  it("encodes canonical CBOR by hand-checked bytes", () => {
    expect(toHex(encodeCbor("0"))).toBe("6130");
    expect(toHex(encodeCbor([1, 23, 24, 255, 256, 65536, -1, -25]))).toBe(
      "88" + "01" + "17" + "1818" + "18ff" + "190100" + "1a00010000" + "20" + "3818",
    );
    expect(toHex(encodeCbor(null))).toBe("f6");
    expect(toHex(encodeCbor(Uint8Array.of(1, 2)))).toBe("420102");
    expect(toHex(encodeCbor(2 ** 32))).toBe("1b0000000100000000");
    expect(toHex(encodeCbor(["salt"]))).toBe("816473616c74");
  });

  it("pickles by hand-checked bytes: protocol 5, a frame, memoized str, bytes and tuples", () => {
    // pickle.dumps("0", protocol=5): PROTO 5, FRAME 5, SHORT_BINUNICODE "0", MEMOIZE, STOP
    expect(toHex(encodePickle("0"))).toBe("8005" + "950500000000000000" + "8c0130" + "94" + "2e");
    // (b"\x07", (1, 300, 70000, -1), None): bytes, MARK ints TUPLE, None, TUPLE3
    expect(toHex(encodePickle([Uint8Array.of(7), [1, 300, 70000, -1], null]))).toBe(
      "8005" +
        "951a00000000000000" +
        "430107" +
        "94" +
        "28" +
        "4b01" +
        "4d2c01" +
        "4a70110100" +
        "4affffffff" +
        "74" +
        "94" +
        "4e" +
        "87" +
        "94" +
        "2e",
    );
  });

  it("defaults to vLLM's sha256 (pickle) with NONE_HASH = sha256(pickle('vllm-none-hash'))", () => {
    const none = noneHashOf(VLLM_DEFAULT_NONE_HASH_SEED);
    expect(none).toEqual(sha256(encodePickle("vllm-none-hash")));
    const hashes = computeBlockHashes([1, 2, 3, 4, 5, 6, 7], { blockSizeTokens: 3 });
    expect(hashes.length).toBe(2);
    expect(hashes[0]).toEqual(sha256(encodePickle([none, [1, 2, 3], null])));
    expect(hashes[1]).toEqual(hashBlockTokens(hashes[0]!, [4, 5, 6]));
    expect(
      computeBlockHashes([4, 5, 6], {
        blockSizeTokens: 3,
        parentHash: hashes[0],
        firstTokenIndex: 3,
      }),
    ).toEqual([hashes[1]]);
  });

  it("derives sha256_cbor NONE_HASH from PYTHONHASHSEED and chains full blocks only", () => {
    const none = noneHashOf("0", "sha256_cbor");
    expect(none).toEqual(sha256(Uint8Array.of(0x61, 0x30)));
    const hashes = computeBlockHashes([1, 2, 3, 4, 5, 6, 7], {
      blockSizeTokens: 3,
      algorithm: "sha256_cbor",
      hashSeed: "0",
    });
    // Block 0 by hand: array(3) [bytes(32) NONE_HASH, array(3) [1, 2, 3], null]
    const block0 = sha256(Uint8Array.from([0x83, 0x58, 0x20, ...none, 0x83, 1, 2, 3, 0xf6]));
    expect(hashes).toEqual([
      block0,
      sha256(Uint8Array.from([0x83, 0x58, 0x20, ...block0, 0x83, 4, 5, 6, 0xf6])),
    ]);
  });

  it("orders extra keys LoRA, multimodal (identifier, offset in block), salt (block 0), embeds", () => {
    const tokens = Array.from({ length: 8 }, (_, i) => i + 10);
    const embeds = Uint8Array.from({ length: 8 * 4 }, (_, i) => i);
    const hashes = computeBlockHashes(tokens, {
      blockSizeTokens: 4,
      algorithm: "sha256_cbor",
      loraName: "lora-x",
      cacheSalt: "tenant-a",
      multimodal: [{ identifier: "img", offset: 2, length: 4 }],
      promptEmbeds: { bytes: embeds, bytesPerToken: 4 },
    });
    const none = noneHashOf(VLLM_DEFAULT_NONE_HASH_SEED, "sha256_cbor");
    const block0 = vllmHash("sha256_cbor", [
      none,
      tokens.slice(0, 4),
      ["lora-x", ["img", 2], "tenant-a", sha256(embeds.subarray(0, 16))],
    ]);
    expect(hashes[0]).toEqual(block0);
    const keys1 = ["lora-x", ["img", -2], sha256(embeds.subarray(16, 32))];
    expect(hashes[1]).toEqual(hashBlockTokens(block0, tokens.slice(4), keys1, "sha256_cbor"));
  });

  it("mixes cache_salt into the first block only, so salted chains never meet unsalted ones", () => {
    const tokens = Array.from({ length: 64 }, (_, i) => i * 1000);
    const plain = computeBlockHashes(tokens, { blockSizeTokens: 16 });
    const salted = computeBlockHashes(tokens, { blockSizeTokens: 16, cacheSalt: "tenant-a" });
    expect(salted[1]).toEqual(hashBlockTokens(salted[0]!, tokens.slice(16, 32)));
    for (let i = 0; i < 4; i++) expect(toHex(salted[i]!)).not.toBe(toHex(plain[i]!));
    expect(computeBlockHashes(tokens, { blockSizeTokens: 16, cacheSalt: "" })).toEqual(plain);
  });

  it("gives 16-byte xxHash chains, and refuses one without a seed vLLM could share", () => {
    const seeded = computeBlockHashes([1, 2, 3, 4], {
      blockSizeTokens: 2,
      algorithm: "xxhash",
      hashSeed: "42",
    });
    expect(seeded.map((h) => h.byteLength)).toEqual([16, 16]);
    expect(
      reasonOf(() => computeBlockHashes([1, 2], { blockSizeTokens: 2, algorithm: "xxhash_cbor" })),
    ).toBe("OUT_OF_RANGE hashSeed");
    const none = noneHashOf("42", "xxhash");
    expect(
      computeBlockHashes([1, 2, 3, 4], { blockSizeTokens: 2, algorithm: "xxhash", noneHash: none }),
    ).toEqual(seeded);
  });

  it("gives KV events' 64-bit form: the last 8 bytes, big-endian, unsigned", () => {
    const hash = Uint8Array.from({ length: 32 }, (_, i) => (i < 24 ? 0xaa : 0xf0 + i - 24));
    expect(kvEventBlockHash(hash)).toBe(0xf0f1f2f3f4f5f6f7n);
    expect(kvEventBlockHash(new Uint8Array(16))).toBe(0n);
  });

  it("refuses bad input with a typed error naming the field", () => {
    const base = { blockSizeTokens: 2 };
    expect(reasonOf(() => computeBlockHashes([1, 2], { blockSizeTokens: 0 }))).toBe(
      "OUT_OF_RANGE blockSizeTokens",
    );
    expect(
      reasonOf(() => computeBlockHashes([1, 2], { ...base, parentHash: new Uint8Array(16) })),
    ).toBe("OUT_OF_RANGE firstTokenIndex");
    expect(
      reasonOf(() =>
        computeBlockHashes([1, 2], { ...base, parentHash: new Uint8Array(16), firstTokenIndex: 2 }),
      ),
    ).toBe("OUT_OF_RANGE parentHash");
    expect(reasonOf(() => computeBlockHashes([1, 2.5], base))).toBe("OUT_OF_RANGE tokens[1]");
    const unsorted = [
      { identifier: "b", offset: 5, length: 1 },
      { identifier: "a", offset: 1, length: 1 },
    ];
    expect(reasonOf(() => computeBlockHashes([1, 2], { ...base, multimodal: unsorted }))).toBe(
      "OUT_OF_RANGE multimodal[1]",
    );
    const embeds = { bytes: new Uint8Array(5), bytesPerToken: 2 };
    expect(reasonOf(() => computeBlockHashes([1, 2], { ...base, promptEmbeds: embeds }))).toBe(
      "OUT_OF_RANGE promptEmbeds",
    );
    expect(reasonOf(() => computeBlockHashes([1, 2], { ...base, loraName: "\ud800" }))).toBe(
      "OUT_OF_RANGE value[2][0]",
    );
    expect(
      reasonOf(() => computeBlockHashes([1, 2], { ...base, algorithm: "md5" as "sha256" })),
    ).toBe("OUT_OF_RANGE algorithm");
  });
});
