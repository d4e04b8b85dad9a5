import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { digestKvCache, encodeOkvBytes, partsOf, toHex } from "../src/index";
import { mhaDescriptor, mlaDescriptor, randomCache } from "./fixtures";
import { pythonUnavailable, runPython } from "./python";

/**
 * An independent reader written from docs/formats/okv.md alone (Python stdlib: struct, json,
 * hashlib, a bitwise CRC-32C, and Debian's python3-xxhash for the digest): if the spec and the
 * code drift apart, this test fails.
 */
const reader = String.raw`
import hashlib, json, struct, sys, xxhash
def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF
assert crc32c(b"123456789") == 0xE3069283
raw = open(sys.argv[1], "rb").read()
assert raw[:8] == b"\x89OKV\r\n\x1a\n"
major, minor, hlen = struct.unpack_from("<HHI", raw, 8)
assert major == 1 and 2 <= hlen <= 65536
header_json = raw[16:16 + hlen]
assert struct.unpack_from("<I", raw, 16 + hlen)[0] == crc32c(header_json)
header = json.loads(header_json)
d = header["descriptor"]
parts = ["latent"] if d["attention"]["kind"] == "mla" else ["k", "v"]
if d["scaleScheme"] != "none":
    parts += [p + "_scale" for p in parts]
ids = ["k", "v", "latent", "k_scale", "v_scale", "latent_scale"]
def part_bytes(part):
    if part.endswith("_scale"):
        return 4 * {"per_tensor": 1, "per_token": d["tokenCount"], "per_head": d["headRange"]["count"]}[d["scaleScheme"]]
    a = d["attention"]
    heads, dim = (1, a["latentDim"] + a["ropeDim"]) if a["kind"] == "mla" else (d["headRange"]["count"], a["headDim"])
    return d["tokenCount"] * heads * dim * {"f32": 4, "f16": 2, "bf16": 2}.get(d["dtype"], 1)
pos = 16 + hlen + 4
expect = [(l, p) for l in range(d["numLayers"]) for p in parts]
data = {}
first_of_layer = {}
frames = 0
index_at = 0
sha = xxhash.xxh3_128()
while True:
    ftype, part_id, flags, layer, offset, length, crc = struct.unpack_from("<BBHIQII", raw, pos)
    payload = raw[pos + 24:pos + 24 + length]
    assert flags == 0 and crc32c(payload) == crc
    if ftype == 1:
        key = (layer, ids[part_id])
        assert key == expect[0], (key, expect[0])
        assert offset == len(data.get(key, b""))
        assert length <= header["maxFrameBytes"]
        first_of_layer.setdefault(layer, pos)
        data[key] = data.get(key, b"") + payload
        sha.update(payload)
        frames += 1
    elif ftype == 2:
        index_at = pos
        assert list(struct.unpack_from("<%dQ" % d["numLayers"], payload)) == [first_of_layer[l] for l in range(d["numLayers"])]
    else:
        assert ftype == 3 and length == 56 and pos + 80 == len(raw)
        digest, reserved, total, count, tflags, index_offset = struct.unpack_from("<16s16sQIIQ", payload)
        assert total == sum(len(v) for v in data.values()) and count == frames and index_offset == index_at
        assert tflags == 1 and digest == sha.digest() and reserved == bytes(16)
        break
    pos += 24 + length
    while expect and len(data.get(expect[0], b"")) == part_bytes(expect[0][1]):
        expect.pop(0)
assert not expect
print(json.dumps({"digest": sha.hexdigest(), "parts": {"%d/%s" % k: hashlib.sha256(v).hexdigest() for k, v in data.items()}}))
`;

describe(".okv spec conformance", () => {
  const missing = pythonUnavailable(["xxhash"]);
  const dir = mkdtempSync(join(tmpdir(), "opal-kv-okv-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.skipIf(missing !== undefined)(
    "a reader written from docs/formats/okv.md reads files written here",
    () => {
      const descriptors = [
        mhaDescriptor({ tokenCount: 9 }),
        mhaDescriptor({
          tokenCount: 7,
          dtype: "fp8_e4m3fn",
          scaleScheme: "per_head",
          layout: "hnd",
        }),
        mlaDescriptor({ tokenCount: 5, dtype: "bf16" }),
      ];
      for (const descriptor of descriptors) {
        const cache = randomCache(descriptor, 21);
        const path = join(dir, "x.okv");
        writeFileSync(path, encodeOkvBytes(cache, { maxFrameBytes: 100 }));
        const result = JSON.parse(runPython(reader, [path]));
        expect(result.digest).toBe(toHex(digestKvCache(cache)));
        for (let layer = 0; layer < descriptor.numLayers; layer++) {
          for (const part of partsOf(descriptor)) {
            const expected = createHash("sha256").update(cache.part(layer, part)).digest("hex");
            expect(result.parts[`${layer}/${part}`]).toBe(expected);
          }
        }
      }
    },
  );
});
