/**
 * The hostile-input corpus: small files, each broken in one way, with the reason every decoder
 * must report. `generate.ts` writes them to this folder; the corpus test checks the committed
 * files still equal this output and that each is rejected with its reason.
 */
import { crc32c } from "@node-rs/crc32";
import {
  createKvCache,
  encodeOkvBytes,
  type KvDescriptor,
  type KvFormatReason,
  partsOf,
} from "../../src/index";

export interface CorpusCase {
  readonly name: string;
  readonly format: "okv" | "safetensors";
  readonly reason: KvFormatReason;
  readonly bytes: Uint8Array;
}

const descriptor: KvDescriptor = {
  modelFingerprint: "c0ffee",
  numLayers: 2,
  attention: { kind: "mha", numKvHeads: 2, headDim: 4 },
  headRange: { start: 0, count: 2 },
  dtype: "f16",
  scaleScheme: "none",
  layout: "nhd",
  tokenStart: 0,
  tokenCount: 5,
  blockSizeTokens: 16,
  numerics: {
    deviceKind: "reference",
    precisionPath: "f32 accumulate, f16 out",
    bitExact: true,
    maxAbsError: 0,
    maxRelError: 0,
  },
};

function validOkv(): Uint8Array {
  const cache = createKvCache(descriptor);
  let v = 1;
  for (let l = 0; l < descriptor.numLayers; l++) {
    for (const p of partsOf(descriptor)) {
      const part = cache.part(l, p);
      for (let i = 0; i < part.byteLength; i++) part[i] = v++ & 0xff;
    }
  }
  return encodeOkvBytes(cache, { maxFrameBytes: 48 });
}

const crc = (bytes: Uint8Array) => crc32c(bytes) >>> 0;
const view = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/** Replaces the header JSON (fixing its length and CRC). */
function withHeader(json: string): Uint8Array {
  const base = validOkv();
  const oldLength = view(base).getUint32(12, true);
  const text = new TextEncoder().encode(json);
  const out = new Uint8Array(base.byteLength - oldLength + text.byteLength);
  out.set(base.subarray(0, 16));
  view(out).setUint32(12, text.byteLength, true);
  out.set(text, 16);
  view(out).setUint32(16 + text.byteLength, crc(text), true);
  out.set(base.subarray(16 + oldLength + 4), 16 + text.byteLength + 4);
  return out;
}

function framesStart(bytes: Uint8Array): number {
  return 16 + view(bytes).getUint32(12, true) + 4;
}

function headerJson(overrides: Record<string, unknown>): string {
  return JSON.stringify({ descriptor: { ...descriptor, ...overrides }, maxFrameBytes: 48 });
}

function safetensors(
  header: unknown,
  dataBytes: number,
  lengthOverride?: [number, number],
): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + dataBytes);
  view(out).setUint32(0, lengthOverride?.[0] ?? json.byteLength, true);
  view(out).setUint32(4, lengthOverride?.[1] ?? 0, true);
  out.set(json, 8);
  return out;
}

export function buildCorpus(): CorpusCase[] {
  const cases: CorpusCase[] = [];
  const okv = (name: string, reason: KvFormatReason, bytes: Uint8Array) =>
    cases.push({ name, format: "okv", reason, bytes });
  const st = (name: string, reason: KvFormatReason, bytes: Uint8Array) =>
    cases.push({ name, format: "safetensors", reason, bytes });
  const base = validOkv();
  const first = framesStart(base);
  const mutate = (fn: (b: Uint8Array) => void) => {
    const b = base.slice();
    fn(b);
    return b;
  };
  const trailerAt = base.byteLength - 80;
  const fixTrailerCrc = (b: Uint8Array) =>
    view(b).setUint32(trailerAt + 20, crc(b.subarray(trailerAt + 24)), true);

  okv("empty", "TRUNCATED", new Uint8Array(0));
  okv(
    "bad-magic",
    "BAD_MAGIC",
    mutate((b) => (b[1] = 0x50)),
  );
  okv(
    "version-2",
    "UNSUPPORTED_VERSION",
    mutate((b) => view(b).setUint16(8, 2, true)),
  );
  okv(
    "header-length-huge",
    "LENGTH_LIMIT",
    mutate((b) => view(b).setUint32(12, 0xffffffff, true)),
  );
  okv(
    "header-crc",
    "CHECKSUM_MISMATCH",
    mutate((b) => (b[20] = (b[20] as number) ^ 1)),
  );
  okv("header-not-json", "INVALID_HEADER", withHeader("{not json"));
  okv("header-array", "INVALID_HEADER", withHeader("[1,2]"));
  okv(
    "descriptor-negative-layers",
    "INVALID_DESCRIPTOR",
    withHeader(headerJson({ numLayers: -1 })),
  );
  okv(
    "descriptor-null",
    "INVALID_HEADER",
    withHeader(JSON.stringify({ descriptor: null, maxFrameBytes: 48 })),
  );
  okv(
    "descriptor-30m-layers",
    "INVALID_DESCRIPTOR",
    withHeader(headerJson({ numLayers: 30_000_000 })),
  );
  okv("descriptor-bad-dtype", "UNSUPPORTED_DTYPE", withHeader(headerJson({ dtype: "f64" })));
  okv(
    "descriptor-huge-shape",
    "LENGTH_LIMIT",
    withHeader(
      headerJson({
        tokenCount: 2 ** 40,
        attention: { kind: "mha", numKvHeads: 65536, headDim: 65536 },
        headRange: { start: 0, count: 65536 },
      }),
    ),
  );
  okv(
    "descriptor-huge-but-valid-then-eof",
    "TRUNCATED",
    withHeader(
      headerJson({ tokenCount: 2 ** 36, attention: { kind: "mha", numKvHeads: 2, headDim: 4 } }),
    ).subarray(0, first + 24 + 48 + 40),
  );
  okv(
    "frame-type",
    "INVALID_FRAME",
    mutate((b) => (b[first] = 9)),
  );
  okv(
    "frame-flags",
    "INVALID_FRAME",
    mutate((b) => (b[first + 2] = 1)),
  );
  okv(
    "frame-part-id",
    "INVALID_FRAME",
    mutate((b) => (b[first + 1] = 17)),
  );
  okv(
    "frame-too-long",
    "LENGTH_LIMIT",
    mutate((b) => view(b).setUint32(first + 16, 0x7fffffff, true)),
  );
  okv(
    "frame-empty",
    "LENGTH_LIMIT",
    mutate((b) => view(b).setUint32(first + 16, 0, true)),
  );
  okv(
    "frame-crc",
    "CHECKSUM_MISMATCH",
    mutate((b) => (b[first + 30] = (b[first + 30] as number) ^ 0x40)),
  );
  okv(
    "frame-wrong-layer",
    "OUT_OF_ORDER",
    mutate((b) => view(b).setUint32(first + 4, 1, true)),
  );
  okv(
    "frame-wrong-part",
    "OUT_OF_ORDER",
    mutate((b) => (b[first + 1] = 1)),
  );
  okv(
    "frame-gap",
    "INVALID_OFFSETS",
    mutate((b) => view(b).setUint32(first + 8, 8, true)),
  );
  okv(
    "frame-offset-2p53",
    "OUT_OF_RANGE",
    mutate((b) => view(b).setUint32(first + 12, 0x00200000, true)),
  );
  okv("truncated-in-frame", "TRUNCATED", base.subarray(0, first + 30));
  okv("truncated-before-trailer", "TRUNCATED", base.subarray(0, trailerAt));
  okv("trailing-byte", "TRAILING_DATA", Uint8Array.from([...base, 0]));
  okv(
    "digest-mismatch",
    "DIGEST_MISMATCH",
    mutate((b) => {
      b[trailerAt + 24] = (b[trailerAt + 24] as number) ^ 1;
      fixTrailerCrc(b);
    }),
  );
  okv(
    "trailer-reserved-bytes",
    "INVALID_FRAME",
    mutate((b) => {
      b[trailerAt + 24 + 20] = 1; // reserved bytes 16..31 of the trailer payload must be zero
      fixTrailerCrc(b);
    }),
  );
  okv(
    "trailer-counts",
    "INVALID_FRAME",
    mutate((b) => {
      view(b).setUint32(trailerAt + 24 + 40, 1, true);
      fixTrailerCrc(b);
    }),
  );
  okv(
    "trailer-flags",
    "INVALID_FRAME",
    mutate((b) => {
      view(b).setUint32(trailerAt + 24 + 44, 6, true);
      fixTrailerCrc(b);
    }),
  );
  const indexAt = trailerAt - 24 - 8 * descriptor.numLayers;
  okv(
    "index-offsets",
    "INVALID_OFFSETS",
    mutate((b) => {
      view(b).setUint32(indexAt + 24 + 8, 3, true);
      view(b).setUint32(indexAt + 20, crc(b.subarray(indexAt + 24, trailerAt)), true);
    }),
  );

  const t = (begin: number, end: number, shape: number[], dtype = "F32") => ({
    dtype,
    shape,
    data_offsets: [begin, end],
  });
  st("short", "TRUNCATED", Uint8Array.of(1, 2, 3));
  st("header-past-end", "TRUNCATED", safetensors({ a: t(0, 4, [1]) }, 4, [4096, 0]));
  st("header-length-4gib", "LENGTH_LIMIT", safetensors({}, 0, [2, 1]));
  st(
    "header-not-json",
    "INVALID_HEADER",
    Uint8Array.from([...safetensors({}, 0, [3, 0]).subarray(0, 8), 0x7b, 0x7b, 0x7d]),
  );
  st("hole", "INVALID_OFFSETS", safetensors({ a: t(0, 4, [1]), b: t(8, 12, [1]) }, 12));
  st("overlap", "INVALID_OFFSETS", safetensors({ a: t(0, 8, [2]), b: t(4, 12, [2]) }, 12));
  st("past-end", "INVALID_OFFSETS", safetensors({ a: t(0, 16, [4]) }, 8));
  st("trailing-data", "INVALID_OFFSETS", safetensors({ a: t(0, 4, [1]) }, 8));
  st("huge-shape", "SHAPE_MISMATCH", safetensors({ a: t(0, 4, [2 ** 31, 2 ** 31, 2 ** 31]) }, 4));
  st("size-mismatch", "SHAPE_MISMATCH", safetensors({ a: t(0, 8, [3]) }, 8));
  st("bad-dtype", "UNSUPPORTED_DTYPE", safetensors({ a: t(0, 8, [1], "C128") }, 8));
  st("negative-dim", "INVALID_HEADER", safetensors({ a: t(0, 0, [-1]) }, 0));
  st("metadata-not-string", "INVALID_HEADER", safetensors({ __metadata__: { a: 5 } }, 0));
  // Valid safetensors whose OPAL descriptor (read by decodeSafetensorsKv, `opal inspect`) is hostile:
  // 30 million layers in a 1 KB file must fail before the layer table is allocated (issue #18).
  const kvFile = (metadata: string) =>
    safetensors({ __metadata__: { descriptor: metadata }, "layers.0.k": t(0, 4, [1]) }, 4);
  st(
    "kv-descriptor-30m-layers",
    "INVALID_DESCRIPTOR",
    kvFile(JSON.stringify({ ...descriptor, numLayers: 30_000_000 })),
  );
  st("kv-descriptor-null", "INVALID_DESCRIPTOR", kvFile("null"));
  st("kv-descriptor-missing", "INVALID_HEADER", safetensors({ "layers.0.k": t(0, 4, [1]) }, 4));
  st("kv-descriptor-too-few-tensors", "SHAPE_MISMATCH", kvFile(JSON.stringify(descriptor)));
  return cases;
}
