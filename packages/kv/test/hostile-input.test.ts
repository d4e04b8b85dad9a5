import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { crc32cOf } from "../src/crc32c-of";
import {
  assertValidDescriptor,
  createOkvDecoder,
  decodeOkvBytes,
  decodeSafetensors,
  decodeSafetensorsKv,
  encodeOkvBytes,
  encodeSafetensors,
  KV_FORMAT_REASONS,
  KvFormatError,
  readOkvLayer,
} from "../src/index";
import { encodeOkvFrameHeader, encodeOkvHead, OkvFrameType } from "../src/okv-format";
import { buildCorpus } from "./corpus/build-corpus";
import { mhaDescriptor, mlaDescriptor, randomCache, sameCache } from "./fixtures";

const corpusDir = join(dirname(fileURLToPath(import.meta.url)), "corpus");

/** Runs `fn`; returns "ok" or the KvFormatError reason; anything else thrown fails the test. */
function outcome(fn: () => unknown): string {
  try {
    fn();
    return "ok";
  } catch (error) {
    if (!(error instanceof KvFormatError)) throw error;
    expect(KV_FORMAT_REASONS).toContain(error.reason);
    return error.reason;
  }
}

function streamDecode(bytes: Uint8Array, chunk: number): void {
  const decoder = createOkvDecoder();
  for (let i = 0; i < bytes.byteLength; i += chunk) decoder.push(bytes.slice(i, i + chunk));
  decoder.end();
}

describe("hostile-input corpus", () => {
  const files = readdirSync(corpusDir).filter((f) => f.endsWith(".bin"));

  it("the committed files are what build-corpus.ts generates", () => {
    const expected = buildCorpus().map((c) => `${c.format}-${c.name}.${c.reason}.bin`);
    expect(files.sort()).toEqual(expected.sort());
    for (const c of buildCorpus()) {
      expect(
        Buffer.compare(
          readFileSync(join(corpusDir, `${c.format}-${c.name}.${c.reason}.bin`)),
          c.bytes,
        ),
      ).toBe(0);
    }
  });

  for (const file of files) {
    const [format, , reason] = file.match(/^(okv|safetensors)-(.+)\.([A-Z_]+)\.bin$/)!.slice(1);
    it(`${file}: rejected with ${reason}`, () => {
      const bytes = new Uint8Array(readFileSync(join(corpusDir, file)));
      if (format === "okv") {
        expect(outcome(() => decodeOkvBytes(bytes))).toBe(reason);
        expect(outcome(() => streamDecode(bytes, 1))).toBe(reason);
        expect(outcome(() => streamDecode(bytes, 7))).toBe(reason);
        outcome(() => readOkvLayer(bytes, 1)); // may or may not notice; never crashes
      } else {
        // kv-* files are valid safetensors whose OPAL KV content (descriptor, tensors) is hostile.
        const kvOnly = file.startsWith("safetensors-kv-");
        expect(outcome(() => decodeSafetensors(bytes))).toBe(kvOnly ? "ok" : reason);
        expect(outcome(() => decodeSafetensorsKv(bytes))).toBe(reason);
      }
    });
  }
});

describe("bounded allocation", () => {
  it("a header declaring a 128 GiB part costs memory in proportion to the bytes actually sent", () => {
    const descriptor = mhaDescriptor({
      numLayers: 1,
      tokenCount: 2 ** 33,
      attention: { kind: "mha", numKvHeads: 2, headDim: 4 },
      headRange: { start: 0, count: 2 },
      dtype: "f16",
    });
    const decoder = createOkvDecoder();
    decoder.push(encodeOkvHead({ descriptor, maxFrameBytes: 1 << 16 }));
    const before = process.memoryUsage().arrayBuffers;
    const payload = new Uint8Array(1 << 16).fill(7);
    const crc = crc32cOf(payload);
    for (let i = 0; i < 64; i++) {
      decoder.push(encodeOkvFrameHeader(OkvFrameType.DATA, 0, 0, i << 16, payload, crc));
      decoder.push(payload);
    }
    const grown = process.memoryUsage().arrayBuffers - before;
    expect(grown).toBeLessThan(16 << 20); // 4 MiB received; the part would be 128 GiB
    expect(() => decoder.end()).toThrow(/TRUNCATED|stream ended/);
  });
});

describe("property: any input is a valid result or a KvFormatError", () => {
  const cache = randomCache(
    mhaDescriptor({ numLayers: 2, tokenCount: 9, dtype: "fp8_e5m2", scaleScheme: "per_head" }),
    11,
  );
  const okv = encodeOkvBytes(cache, { maxFrameBytes: 40 });
  const st = encodeSafetensors(
    {
      a: { dtype: "F16", shape: [3, 2], data: new Uint8Array(12) },
      b: { dtype: "I8", shape: [5], data: new Uint8Array(5) },
    },
    { metadata: { k: "v" } },
  );

  const mutation = (base: Uint8Array) =>
    fc.oneof(
      fc.record({
        kind: fc.constant("flip" as const),
        at: fc.nat(base.byteLength - 1),
        bit: fc.integer({ min: 0, max: 7 }),
      }),
      fc.record({ kind: fc.constant("truncate" as const), at: fc.nat(base.byteLength) }),
      fc.record({
        kind: fc.constant("set" as const),
        at: fc.nat(base.byteLength - 1),
        value: fc.integer({ min: 0, max: 255 }),
      }),
      fc.record({
        kind: fc.constant("insert" as const),
        at: fc.nat(base.byteLength),
        bytes: fc.uint8Array({ maxLength: 30 }),
      }),
    );
  const apply = (
    base: Uint8Array,
    m: { kind: string; at: number; bit?: number; value?: number; bytes?: Uint8Array },
  ) => {
    if (m.kind === "truncate") return base.slice(0, m.at);
    if (m.kind === "insert")
      return Uint8Array.from([
        ...base.subarray(0, m.at),
        ...(m.bytes as Uint8Array),
        ...base.subarray(m.at),
      ]);
    const out = base.slice();
    out[m.at] =
      m.kind === "flip" ? (out[m.at] as number) ^ (1 << (m.bit as number)) : (m.value as number);
    return out;
  };

  it(".okv: mutated files decode to the same cache or fail with a closed reason, in any chunking", () => {
    fc.assert(
      fc.property(
        fc.array(mutation(okv), { minLength: 1, maxLength: 3 }),
        fc.integer({ min: 1, max: 300 }),
        (mutations, chunk) => {
          const bytes = mutations.reduce(apply, okv);
          const whole = outcome(() => {
            const decoded = decodeOkvBytes(bytes);
            // Any accepted file must be a correct cache (CRCs make silent corruption of data impossible).
            if (!sameCache(decoded, cache)) throw new Error("accepted a corrupted cache");
          });
          expect(outcome(() => streamDecode(bytes, chunk))).toBe(whole);
          for (const mode of [{ reuseLayerBuffers: true }, { chunks: true }]) {
            const viaFeed = outcome(() => {
              const decoder = createOkvDecoder(mode);
              for (let i = 0; i < bytes.byteLength; i += chunk)
                for (const _ of decoder.feed(bytes.slice(i, i + chunk)));
              decoder.end();
            });
            expect(viaFeed).toBe(whole);
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it("safetensors: mutated and random files decode or fail with a closed reason", () => {
    fc.assert(
      fc.property(fc.array(mutation(st), { minLength: 1, maxLength: 3 }), (mutations) => {
        outcome(() => decodeSafetensors(mutations.reduce(apply, st)));
      }),
      { numRuns: 400 },
    );
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 200 }),
        (bytes) => void outcome(() => decodeSafetensors(bytes)),
      ),
      { numRuns: 300 },
    );
  });

  it("random bytes and random JSON headers never crash the .okv decoder", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 200 }),
        (bytes) => void outcome(() => decodeOkvBytes(bytes)),
      ),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        outcome(() => assertValidDescriptor(value as never));
      }),
      { numRuns: 300 },
    );
  });

  it("valid descriptors of any shape round-trip through .okv", () => {
    const arbDescriptor = fc
      .record({
        mla: fc.boolean(),
        numLayers: fc.integer({ min: 1, max: 3 }),
        heads: fc.integer({ min: 1, max: 4 }),
        dim: fc.integer({ min: 1, max: 9 }),
        tokens: fc.integer({ min: 1, max: 20 }),
        dtype: fc.constantFrom("f32", "f16", "bf16", "fp8_e4m3fn", "fp8_e5m2", "int8" as const),
        scheme: fc.constantFrom("per_tensor", "per_token", "per_head" as const),
        hnd: fc.boolean(),
        frame: fc.integer({ min: 1, max: 100 }),
      })
      .map((r) => {
        const quantized = r.dtype.startsWith("fp8") || r.dtype === "int8";
        const common = {
          numLayers: r.numLayers,
          tokenCount: r.tokens,
          dtype: r.dtype,
          scaleScheme: quantized ? r.scheme : "none",
        } as const;
        const d = r.mla
          ? mlaDescriptor({
              ...common,
              attention: { kind: "mla", latentDim: r.dim, ropeDim: r.heads - 1 },
            })
          : mhaDescriptor({
              ...common,
              attention: { kind: "mha", numKvHeads: r.heads, headDim: r.dim },
              headRange: { start: 0, count: r.heads },
              layout: r.hnd ? "hnd" : "nhd",
            });
        return { d, frame: r.frame };
      });
    fc.assert(
      fc.property(arbDescriptor, fc.integer({ min: 1, max: 1000 }), ({ d, frame }, seed) => {
        const c = randomCache(d, seed);
        expect(sameCache(decodeOkvBytes(encodeOkvBytes(c, { maxFrameBytes: frame })), c)).toBe(
          true,
        );
      }),
      { numRuns: 150 },
    );
  });
});
