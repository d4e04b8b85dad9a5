import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { pythonUnavailable, runPython } from "../test/python";
import type { BlockHashValue } from "./index";
import { encodePickle, toHex } from "./index";

const sha256 = (bytes: Uint8Array) => new Uint8Array(createHash("sha256").update(bytes).digest());

/** Values a block-hash tuple can hold, chosen at every opcode and framing boundary. */
function cases(): BlockHashValue[] {
  const ints = [0, 1, 255, 256, 65535, 65536, -1, -128, -129, -32768, 2 ** 31 - 1, -(2 ** 31)];
  ints.push(2 ** 31, -(2 ** 31) - 1, 2 ** 32, 2 ** 40 + 5, -(2 ** 47), 2 ** 53 - 1, -(2 ** 53 - 1));
  const out: BlockHashValue[] = [
    [new Uint8Array(32).fill(1), ints, ["lora", ["mm", -3], "salt", new Uint8Array(32).fill(2)]],
    "0",
    [new Uint8Array(0), null, []],
    ["a", "a", "", "", "é", "é", "ab", "ab", "Ā", "Ā", Uint8Array.of(5), Uint8Array.of(5)],
    [
      "x".repeat(255),
      "x".repeat(256),
      "ü".repeat(200),
      "😀 emoji",
      new Uint8Array(255),
      new Uint8Array(256),
    ],
    "x".repeat(70_000),
    ["y".repeat(300), new Uint8Array(70_000).fill(3), "z"],
    [[1], [1, 2], [1, 2, 3], [1, 2, 3, 4], [[[]]]],
  ];
  // Frames close at 64 KiB: block sizes around the boundary, and one spanning several frames.
  for (const n of [13_093, 13_098, 13_099, 13_100, 13_101, 26_210, 30_000]) {
    out.push([new Uint8Array(32), Array.from({ length: n }, (_, i) => 100_000 + i), null]);
  }
  return out;
}

const toPython = (v: BlockHashValue): unknown =>
  v instanceof Uint8Array
    ? { b: Buffer.from(v).toString("hex") }
    : Array.isArray(v)
      ? v.map(toPython)
      : v;

describe("encodePickle", () => {
  const missing = pythonUnavailable();
  it.skipIf(missing !== undefined)(
    "writes the bytes of CPython's pickle.dumps(x, protocol=5)",
    () => {
      const script = `
import hashlib, json, pickle, sys
def value(v):
    if isinstance(v, dict): return bytes.fromhex(v["b"])
    if isinstance(v, list): return tuple(value(x) for x in v)
    # A fresh object for each str, as vLLM's request fields are (CPython shares only the short ones).
    if isinstance(v, str): return "".join(list(v))
    return v
for v in json.loads(sys.stdin.read()):
    data = pickle.dumps(value(v), protocol=5)
    print(len(data), data.hex() if len(data) < 512 else hashlib.sha256(data).hexdigest())
`;
      const all = cases();
      const expected = runPython(script, [], JSON.stringify(all.map(toPython)))
        .trim()
        .split("\n");
      expect(expected.length).toBe(all.length);
      all.forEach((v, i) => {
        // Large pickles are compared by length and SHA-256, small ones byte for byte.
        const bytes = encodePickle(v);
        const shown = bytes.byteLength < 512 ? toHex(bytes) : toHex(sha256(bytes));
        expect(`${bytes.byteLength} ${shown}`, `case ${i}`).toBe(expected[i]);
      });
    },
  );
});
