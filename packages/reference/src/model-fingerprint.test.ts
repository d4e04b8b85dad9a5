import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { createPresetWeights } from "./create-preset-weights";
import { toModelFingerprint } from "./model-fingerprint";
import { toNamedWeights } from "./model-weights";
import { createReferenceModel } from "./reference-model";

describe("toModelFingerprint", () => {
  it("changes with any weight bit and with the config, and is lower-case hex SHA-256", () => {
    const weights = createPresetWeights("opal-tiny");
    const base = toModelFingerprint(weights);
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    const norm = Float32Array.from(weights.norm);
    norm[5] = Math.fround(norm[5]! + 2 ** -20);
    expect(toModelFingerprint({ ...weights, norm })).not.toBe(base);
    const config = { ...weights.config, rmsNormEps: 1e-6 };
    expect(toModelFingerprint({ ...weights, config })).not.toBe(base);
    expect(createReferenceModel(weights).fingerprint).toBe(base);
    expect(toModelFingerprint(createPresetWeights("opal-small"))).not.toBe(base);
  });
});

describe("createReferenceModel", () => {
  it("rejects weights whose sizes do not match the config", () => {
    const weights = createPresetWeights("opal-tiny");
    const layers = [...weights.layers];
    layers[1] = { ...layers[1]!, kProj: new Float32Array(10) };
    expect(() => createReferenceModel({ ...weights, layers })).toThrow(
      /weight model\.layers\.1\.self_attn\.k_proj\.weight has 10 elements \(expected shape \[32, 64\] = 2048\)/,
    );
    expect(() => createReferenceModel({ ...weights, layers: layers.slice(0, 1) })).toThrow(
      /weights have 1 layers \(config says 2\)/,
    );
  });
});

describe("the fingerprint as docs/protocol/models.md specifies it, byte for byte", () => {
  it("reproduces the worked example from the document's text alone", async () => {
    const doc = await readFile(
      new URL("../../../docs/protocol/models.md", import.meta.url),
      "utf8",
    );
    const example = doc.slice(doc.indexOf("_Worked example_"));
    const [config, list] = [...example.matchAll(/```text\n([\s\S]+?)\n```/g)].map((m) => m[1]!);
    const tensors = list!.split("\n");
    const expected = /its fingerprint is `([0-9a-f]{64})`/.exec(example)![1]!;
    const prefix =
      /hashed as the bytes `([0-9a-f]{16})` `([^`]+)`\s+`([0-9a-f]{16})` and those (\d+) bytes/.exec(
        example,
      )!;
    // An implementation written from the text: length-prefixed items, tensors in the listed order.
    const weights = createPresetWeights("opal-tiny");
    const byName = new Map(toNamedWeights(weights).map((t) => [t.name, t]));
    const hash = createHash("sha256");
    const item = (bytes: Uint8Array) => {
      const length = Buffer.alloc(8);
      length.writeBigUInt64LE(BigInt(bytes.byteLength));
      hash.update(length).update(bytes);
    };
    item(Buffer.from(prefix[2]!, "ascii"));
    item(Buffer.from(config!, "utf8"));
    expect(Buffer.from(prefix[1]!, "hex").readBigUInt64LE()).toBe(BigInt(prefix[2]!.length));
    expect(Buffer.from(prefix[3]!, "hex").readBigUInt64LE()).toBe(BigInt(config!.length));
    expect(Number(prefix[4])).toBe(config!.length);
    expect(tensors).toHaveLength(byName.size);
    for (const line of tensors) {
      const [name, shape] = line.split(" ") as [string, string];
      const tensor = byName.get(name)!;
      expect(JSON.stringify(tensor.shape), name).toBe(shape);
      item(Buffer.from(name, "ascii"));
      item(Buffer.from(shape, "ascii"));
      item(new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength));
    }
    expect(hash.digest("hex")).toBe(expected);
    expect(toModelFingerprint(weights)).toBe(expected);
    // The canonical config is the document's, number formatting included (0.00001, not 1e-05).
    expect(config).toContain('"rmsNormEps":0.00001');
  });
});
