import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { pythonUnavailable, runPython } from "../test/python";
import { decodeSafetensors, encodeSafetensors, fromFloat32, type KvFormatError } from "./index";

const reasonOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return (error as KvFormatError).reason;
  }
  return "no error";
};

function rawFile(header: unknown, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(out.buffer).setUint32(0, json.byteLength, true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

describe("safetensors", () => {
  const f32 = fromFloat32(Float32Array.of(1, 2, 3, 4, 5, 6), "f32");
  const bf16 = fromFloat32(Float32Array.of(-1.5, 0.25), "bf16");
  const i8 = Int8Array.of(-128, 127, 0);

  it("round-trips tensors and metadata with views, header padded to 8 bytes", () => {
    const bytes = encodeSafetensors(
      {
        "a.weight": { dtype: "F32", shape: [2, 3], data: f32 },
        b: { dtype: "BF16", shape: [2], data: bf16 },
        c: { dtype: "I8", shape: [3], data: new Uint8Array(i8.buffer) },
        empty: { dtype: "F16", shape: [0, 4], data: new Uint8Array(0) },
      },
      { metadata: { format: "pt", __proto__: "x" } as Record<string, string> },
    );
    const headerLength = new DataView(bytes.buffer).getUint32(0, true);
    expect(headerLength % 8).toBe(0);
    const file = decodeSafetensors(bytes);
    expect([...file.tensors.keys()]).toEqual(["a.weight", "b", "empty", "c"]);
    expect(file.tensors.get("a.weight")!.shape).toEqual([2, 3]);
    expect(file.tensors.get("a.weight")!.data).toEqual(f32);
    expect(file.tensors.get("a.weight")!.data.buffer).toBe(bytes.buffer); // a view
    expect(file.metadata.format).toBe("pt");
  });

  it("rejects holes, overlaps, wrong sizes, bad dtypes and bad lengths", () => {
    const data = new Uint8Array(16);
    const t = (begin: number, end: number, shape = [2]) => ({
      dtype: "F32",
      shape,
      data_offsets: [begin, end],
    });
    expect(reasonOf(() => decodeSafetensors(rawFile({ a: t(0, 8), b: t(8, 16) }, data)))).toBe(
      "no error",
    );
    expect(
      reasonOf(() => decodeSafetensors(rawFile({ a: t(0, 8), b: t(12, 20) }, new Uint8Array(20)))),
    ).toBe("INVALID_OFFSETS");
    expect(
      reasonOf(() => decodeSafetensors(rawFile({ a: t(0, 8), b: t(4, 12) }, data.subarray(0, 12)))),
    ).toBe("INVALID_OFFSETS");
    expect(reasonOf(() => decodeSafetensors(rawFile({ a: t(0, 8) }, data)))).toBe(
      "INVALID_OFFSETS",
    );
    expect(reasonOf(() => decodeSafetensors(rawFile({ a: t(0, 16, [3]) }, data)))).toBe(
      "SHAPE_MISMATCH",
    );
    expect(
      reasonOf(() => decodeSafetensors(rawFile({ a: t(0, 16, [2 ** 40, 2 ** 40]) }, data))),
    ).toBe("SHAPE_MISMATCH");
    expect(
      reasonOf(() => decodeSafetensors(rawFile({ a: { ...t(0, 16, [4]), dtype: "C64" } }, data))),
    ).toBe("UNSUPPORTED_DTYPE");
    expect(reasonOf(() => decodeSafetensors(rawFile({ a: t(0, 32, [8]) }, data)))).toBe(
      "INVALID_OFFSETS",
    );
    expect(reasonOf(() => decodeSafetensors(rawFile([1], data)))).toBe("INVALID_HEADER");
    expect(
      reasonOf(() => decodeSafetensors(rawFile({ __metadata__: { a: 1 } }, new Uint8Array(0)))),
    ).toBe("INVALID_HEADER");
    for (const metadata of [[], "x", 1, true]) {
      expect(() =>
        decodeSafetensors(rawFile({ __metadata__: metadata }, new Uint8Array(0))),
      ).toThrow(
        /^\[invalid_argument\] __metadata__ is an? (array|string|number|boolean), expected an object of strings or null$/,
      );
    }
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setUint32(4, 1, true);
    expect(reasonOf(() => decodeSafetensors(huge))).toBe("LENGTH_LIMIT");
    const long = new Uint8Array(16);
    new DataView(long.buffer).setUint32(0, 100, true);
    expect(reasonOf(() => decodeSafetensors(long))).toBe("TRUNCATED");
    expect(reasonOf(() => decodeSafetensors(new Uint8Array(3)))).toBe("TRUNCATED");
  });

  it("reads `__metadata__: null` as no metadata, as the reference (Rust) reader does", () => {
    const data = new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
    const file = decodeSafetensors(
      rawFile({ __metadata__: null, a: { dtype: "F32", shape: [6], data_offsets: [0, 24] } }, data),
    );
    expect(file.metadata).toEqual({});
    expect(file.tensors.get("a")?.shape).toEqual([6]);
  });

  it("lays tensors out in the reference writer's order: its dtype order descending, then UTF-8 name", () => {
    const t = (dtype: "BF16" | "F16" | "U16" | "I16" | "U8") => ({
      dtype,
      shape: [1],
      data: new Uint8Array(dtype === "U8" ? 1 : 2),
    });
    const bytes = encodeSafetensors([
      ["a", t("I16")],
      ["b", t("F16")],
      ["c", t("BF16")],
      ["d", t("U16")],
      ["\u{1F600}", t("U8")],
      ["\uFFFD", t("U8")],
    ]);
    // safetensors sorts by `right.dtype().cmp(&left.dtype()).then(lname.cmp(rname))` (Rust str
    // order = UTF-8 bytes: U+FFFD is EF BF BD, U+1F600 is F0 9F 98 80).
    expect([...decodeSafetensors(bytes).tensors.keys()]).toEqual([
      "c",
      "b",
      "d",
      "a",
      "\uFFFD",
      "\u{1F600}",
    ]);
  });

  it("writes a tensor named __proto__ as a plain entry that reads back", () => {
    const bytes = encodeSafetensors([
      ["__proto__", { dtype: "I8", shape: [3], data: new Uint8Array(i8.buffer) }],
    ]);
    const file = decodeSafetensors(bytes);
    expect([...file.tensors.keys()]).toEqual(["__proto__"]);
    expect(file.tensors.get("__proto__")!.data).toEqual(new Uint8Array(i8.buffer));
  });

  it("refuses duplicate names and non-string metadata before yielding any piece", () => {
    const t = { dtype: "F32", shape: [6], data: f32 } as const;
    expect(
      reasonOf(() =>
        encodeSafetensors([
          ["a", t],
          ["a", t],
        ]),
      ),
    ).toBe("INVALID_HEADER");
    expect(
      reasonOf(() => encodeSafetensors({ a: t }, { metadata: { n: 5 } as unknown as never })),
    ).toBe("INVALID_HEADER");
  });

  it("accepts an empty tensor whose other dimensions are huge (a zero dimension means no data)", () => {
    const file = decodeSafetensors(
      rawFile(
        { e: { dtype: "F32", shape: [2 ** 40, 0, 2 ** 40], data_offsets: [0, 0] } },
        f32.subarray(0, 0),
      ),
    );
    expect(file.tensors.get("e")!.shape).toEqual([2 ** 40, 0, 2 ** 40]);
    expect(file.tensors.get("e")!.data.byteLength).toBe(0);
  });

  describe("read by an independent reader (numpy)", () => {
    const missing = pythonUnavailable(["numpy", "json", "struct"]);
    const dir = mkdtempSync(join(tmpdir(), "opal-kv-st-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    it.skipIf(missing !== undefined)(
      `numpy parses files written here${missing ? ` (skipped: ${missing})` : ""}`,
      () => {
        const e4m3 = fromFloat32(Float32Array.of(448, -0.5, 2 ** -9, 1), "fp8_e4m3fn");
        const path = join(dir, "x.safetensors");
        writeFileSync(
          path,
          encodeSafetensors(
            [
              ["kv_cache", { dtype: "F32", shape: [2, 3], data: f32 }],
              [
                "h",
                {
                  dtype: "F16",
                  shape: [2],
                  data: fromFloat32(Float32Array.of(65504, -(2 ** -24)), "f16"),
                },
              ],
              ["b", { dtype: "BF16", shape: [2], data: bf16 }],
              ["q", { dtype: "F8_E4M3", shape: [4], data: e4m3 }],
              ["i", { dtype: "I8", shape: [3], data: new Uint8Array(i8.buffer) }],
            ],
            { metadata: { opal: "kv" } },
          ),
        );
        const script = `
import json, struct, sys, numpy as np
raw = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
head = raw[8:8 + n]
# The spec: the header starts with "{" and may be padded with spaces (here to a multiple of 8).
assert head[:1] == b"{" and head.rstrip(b" ")[-1:] == b"}" and n % 8 == 0, "header framing"
header = json.loads(head)
data = raw[8 + n:]
out = {"__metadata__": header.pop("__metadata__")}
ends = []
for name, t in header.items():
    b, e = t["data_offsets"]
    ends.append((b, e))
    buf = data[b:e]
    d = t["dtype"]
    if d == "BF16":
        arr = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view("<f4")
    elif d == "F8_E4M3":
        q = np.frombuffer(buf, np.uint8).astype(np.int32)
        s, ex, m = (q >> 7) & 1, (q >> 3) & 15, q & 7
        arr = np.where(ex == 0, m / 8.0 * 2.0 ** -6, (1 + m / 8.0) * 2.0 ** (ex - 7.0)) * np.where(s == 1, -1.0, 1.0)
    else:
        arr = np.frombuffer(buf, {"F32": "<f4", "F16": "<f2", "I8": "i1"}[d])
    out[name] = {"shape": list(arr.reshape(t["shape"]).shape), "values": [float(x) for x in arr.ravel()]}
ends.sort()
assert ends[0][0] == 0 and all(a[1] == b[0] for a, b in zip(ends, ends[1:])) and ends[-1][1] == len(data), "holes"
print(json.dumps(out))
`;
        const result = JSON.parse(runPython(script, [path]));
        expect(result.__metadata__).toEqual({ opal: "kv" });
        expect(result.kv_cache).toEqual({ shape: [2, 3], values: [1, 2, 3, 4, 5, 6] });
        expect(result.h.values).toEqual([65504, -(2 ** -24)]);
        expect(result.b.values).toEqual([-1.5, 0.25]);
        expect(result.q.values).toEqual([448, -0.5, 2 ** -9, 1]);
        expect(result.i.values).toEqual([-128, 127, 0]);
      },
    );
  });
});
