import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { pythonUnavailable, runPython } from "../test/python";
import { computeBlockHashes, encodeCbor, hashBlockTokens, noneHashOf, toHex } from "./index";

const sha256 = (bytes: Uint8Array) => new Uint8Array(createHash("sha256").update(bytes).digest());

describe("vLLM block hashes (sha256_cbor)", () => {
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

  it("derives NONE_HASH = sha256(cbor(PYTHONHASHSEED)) and chains full blocks only", () => {
    const none = noneHashOf("0");
    expect(none).toEqual(sha256(Uint8Array.of(0x61, 0x30)));
    const hashes = computeBlockHashes([1, 2, 3, 4, 5, 6, 7], { blockSizeTokens: 3 });
    expect(hashes.length).toBe(2);
    // Block 0 by hand: array(3) [bytes(32) NONE_HASH, array(3) [1, 2, 3], null]
    const block0 = sha256(Uint8Array.from([0x83, 0x58, 0x20, ...none, 0x83, 1, 2, 3, 0xf6]));
    expect(hashes[0]).toEqual(block0);
    expect(hashes[1]).toEqual(
      sha256(Uint8Array.from([0x83, 0x58, 0x20, ...block0, 0x83, 4, 5, 6, 0xf6])),
    );
    expect(hashBlockTokens(block0, [4, 5, 6])).toEqual(hashes[1]);
    expect(computeBlockHashes([4, 5, 6], { blockSizeTokens: 3, parentHash: block0 })).toEqual([
      hashes[1],
    ]);
  });

  it("mixes cache_salt into the first block only, so salted chains never meet unsalted ones", () => {
    const tokens = Array.from({ length: 64 }, (_, i) => i * 1000);
    const plain = computeBlockHashes(tokens, { blockSizeTokens: 16 });
    const salted = computeBlockHashes(tokens, { blockSizeTokens: 16, cacheSalt: "tenant-a" });
    const none = noneHashOf("0");
    expect(salted[0]).toEqual(
      sha256(
        Uint8Array.from([
          0x83,
          0x58,
          0x20,
          ...none,
          ...encodeCbor(tokens.slice(0, 16)),
          ...encodeCbor(["tenant-a"]),
        ]),
      ),
    );
    expect(salted[1]).toEqual(hashBlockTokens(salted[0]!, tokens.slice(16, 32)));
    for (let i = 0; i < 4; i++) expect(toHex(salted[i]!)).not.toBe(toHex(plain[i]!));
    expect(computeBlockHashes(tokens, { blockSizeTokens: 16, hashSeed: "42" })[0]).not.toEqual(
      plain[0],
    );
  });

  const missing = pythonUnavailable();
  it.skipIf(missing !== undefined)("matches an independent stdlib-only Python sha256_cbor", () => {
    const script = `
import hashlib, json, struct, sys
def head(major, n):
    if n < 24: return bytes([major << 5 | n])
    for ai, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)): return bytes([major << 5 | ai]) + struct.pack(fmt, n)
def cbor(x):
    if x is None: return b"\\xf6"
    if isinstance(x, bytes): return head(2, len(x)) + x
    if isinstance(x, str): b = x.encode(); return head(3, len(b)) + b
    if isinstance(x, int): return head(0, x) if x >= 0 else head(1, -1 - x)
    if isinstance(x, (tuple, list)): return head(4, len(x)) + b"".join(cbor(i) for i in x)
    raise TypeError(x)
h = lambda x: hashlib.sha256(cbor(x)).digest()
req = json.loads(sys.stdin.read())
parent = h(req["seed"])
out = []
toks, bs = req["tokens"], req["block"]
for i in range(len(toks) // bs):
    extra = (req["salt"],) if i == 0 and req["salt"] else None
    parent = h((parent, tuple(toks[i * bs:(i + 1) * bs]), extra))
    out.append(parent.hex())
print(json.dumps(out))
`;
    const tokens = Array.from({ length: 100 }, (_, i) => (i * 7919) % 150_000);
    for (const [salt, seed] of [
      ["", "0"],
      ["tenant-b", "1234"],
    ] as const) {
      const expected = JSON.parse(
        runPython(script, [], JSON.stringify({ tokens, block: 16, salt, seed })),
      );
      const ours = computeBlockHashes(tokens, {
        blockSizeTokens: 16,
        cacheSalt: salt || undefined,
        hashSeed: seed,
      });
      expect(ours.map(toHex)).toEqual(expected);
    }
  });
});
