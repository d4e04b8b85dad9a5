import { describe, expect, it } from "vitest";
import { mhaDescriptor, mlaDescriptor, randomCache, sameCache } from "../test/fixtures";
import {
  createKvAssembler,
  createOkvDecoder,
  decodeOkv,
  decodeOkvBytes,
  digestKvCache,
  encodeOkv,
  encodeOkvBytes,
  encodeOkvChunks,
  fromKvParts,
  type KvFormatError,
  type KvLayerParts,
  partsOf,
  readOkvLayer,
  toKvChunks,
} from "./index";

function split(bytes: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.byteLength; i += size) out.push(bytes.slice(i, i + size));
  return out;
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const pieces: Uint8Array[] = [];
  for await (const piece of source) pieces.push(piece.slice());
  return Buffer.concat(pieces);
}

function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    return (error as KvFormatError).reason;
  }
  return "no error";
}

const descriptors = {
  "mha f32 nhd": mhaDescriptor(),
  "mha fp8 per-token hnd": mhaDescriptor({
    dtype: "fp8_e4m3fn",
    scaleScheme: "per_token",
    layout: "hnd",
  }),
  "mla bf16": mlaDescriptor({ dtype: "bf16", numLayers: 2 }),
};

describe(".okv", () => {
  for (const [name, descriptor] of Object.entries(descriptors)) {
    it(`round-trips a ${name} cache through bytes, streams of any chunking, and the index`, async () => {
      const cache = randomCache(descriptor, 7);
      const bytes = encodeOkvBytes(cache, { maxFrameBytes: 100 });
      expect(sameCache(decodeOkvBytes(bytes), cache)).toBe(true);
      const streamed = await collect(encodeOkv(cache, { maxFrameBytes: 100 }));
      expect(Buffer.compare(streamed, bytes)).toBe(0);
      for (const size of [1, 7, 24, 1000, bytes.byteLength]) {
        const layers: KvLayerParts[] = [];
        let trailerDigest: Uint8Array | undefined;
        for await (const event of decodeOkv(split(bytes, size))) {
          if (event.kind === "layer") layers.push(event.layer);
          if (event.kind === "trailer") trailerDigest = event.trailer.digest;
        }
        expect(layers.map((l) => l.layer)).toEqual([...Array(descriptor.numLayers).keys()]);
        expect(
          sameCache(
            fromKvParts(
              descriptor,
              layers.map((l) => l.parts),
            ),
            cache,
          ),
        ).toBe(true);
        expect(trailerDigest).toEqual(digestKvCache(cache));
      }
      for (let layer = 0; layer < descriptor.numLayers; layer++) {
        const parts = readOkvLayer(bytes, layer).parts;
        for (const [part, view] of Object.entries(parts)) {
          expect(Buffer.compare(view, cache.part(layer, part as never))).toBe(0);
        }
      }
    });
  }

  it("encodes an async iterable of layers the same as the cache", async () => {
    const descriptor = mhaDescriptor();
    const cache = randomCache(descriptor, 3);
    async function* layers() {
      for (let l = 0; l < descriptor.numLayers; l++) yield cache.layer(l);
    }
    const fromLayers = await collect(encodeOkv(layers(), { descriptor }));
    expect(Buffer.compare(fromLayers, encodeOkvBytes(cache))).toBe(0);
  });

  it("yields each layer as soon as its last frame arrives", () => {
    const descriptor = mhaDescriptor();
    const cache = randomCache(descriptor);
    const bytes = encodeOkvBytes(cache, { maxFrameBytes: 64, index: false });
    const decoder = createOkvDecoder();
    const first = decoder.push(bytes.subarray(0, 16 + 600));
    expect(first.map((e) => e.kind)).toEqual(["header"]);
    const layerBytes = 2 * 37 * 4 * 8 * 4;
    const frames = Math.ceil((37 * 4 * 8 * 4) / 64) * 2;
    const headerEnd = bytes.byteLength - 80 - 3 * (layerBytes + frames * 24);
    const events = decoder.push(bytes.subarray(16 + 600, headerEnd + layerBytes + frames * 24));
    expect(events.map((e) => e.kind)).toEqual(["layer"]);
  });

  it("records a chunk stream as a file and replays the file as the same chunks", async () => {
    const descriptor = mhaDescriptor({ dtype: "int8", scaleScheme: "per_token" });
    const cache = randomCache(descriptor, 4);
    const sent = [...toKvChunks(cache, { maxChunkBytes: 333 })];
    const file = await collect(encodeOkvChunks(sent, { descriptor }));
    const replayed: { layer: number; part: string; offsetBytes: number; data: Uint8Array }[] = [];
    for await (const event of decodeOkv(split(file, 50), { chunks: true })) {
      if (event.kind === "chunk") replayed.push({ ...event.chunk, data: event.chunk.data.slice() });
      expect(event.kind).not.toBe("layer");
    }
    expect(replayed.map((c) => [c.layer, c.part, c.offsetBytes, c.data.byteLength])).toEqual(
      sent.map((c) => [c.layer, c.part, c.offsetBytes, c.data.byteLength]),
    );
    expect(sameCache(decodeOkvBytes(file), cache)).toBe(true);
    await expect(collect(encodeOkvChunks(sent.slice(0, -1), { descriptor }))).rejects.toMatchObject(
      { reason: "TRUNCATED" },
    );
    await expect(collect(encodeOkvChunks([sent[1]!], { descriptor }))).rejects.toMatchObject({
      reason: "INVALID_OFFSETS",
    });
  });

  it("decodes frames split across input pieces of any size into the same layers (in place)", () => {
    const descriptor = mhaDescriptor({ scaleScheme: "per_token", dtype: "int8" });
    const cache = randomCache(descriptor, 13);
    const bytes = encodeOkvBytes(cache, { maxFrameBytes: 100 });
    for (const piece of [1, 7, 64, 99, 1000]) {
      for (const reuseLayerBuffers of [false, true]) {
        const decoder = createOkvDecoder({ reuseLayerBuffers, adoptInput: false });
        let layers = 0;
        for (let i = 0; i < bytes.byteLength; i += piece) {
          for (const event of decoder.feed(bytes.slice(i, i + piece))) {
            if (event.kind !== "layer") continue;
            for (const part of partsOf(descriptor))
              expect(event.layer.parts[part]).toEqual(cache.part(event.layer.layer, part));
            layers++;
          }
        }
        decoder.end();
        expect(layers).toBe(descriptor.numLayers);
      }
    }
  });

  it("recycles layer buffers when asked, handing out each layer before parsing on", () => {
    const descriptor = mhaDescriptor();
    const cache = randomCache(descriptor, 9);
    const bytes = encodeOkvBytes(cache, { maxFrameBytes: 100 });
    const decoder = createOkvDecoder({ reuseLayerBuffers: true });
    expect(() => decoder.push(bytes)).toThrow(/feed/);
    const seen: Uint8Array[] = [];
    for (const event of decoder.feed(bytes)) {
      if (event.kind !== "layer") continue;
      const k = event.layer.parts.k!;
      expect(Buffer.compare(k, cache.part(event.layer.layer, "k"))).toBe(0);
      seen.push(k);
    }
    decoder.end();
    expect(seen[1]).toBe(seen[2]); // the same buffer, refilled
  });

  it("writes digests independent of frame size and files without digest or index", () => {
    const cache = randomCache(mhaDescriptor());
    const a = encodeOkvBytes(cache, { maxFrameBytes: 10 });
    const b = encodeOkvBytes(cache, { maxFrameBytes: 1 << 20, computeDigest: false, index: false });
    // Trailer payload: 16 digest bytes, then 16 reserved zero bytes.
    const digestOf = (bytes: Uint8Array) =>
      bytes.subarray(bytes.byteLength - 56, bytes.byteLength - 40);
    const reservedOf = (bytes: Uint8Array) =>
      bytes.subarray(bytes.byteLength - 40, bytes.byteLength - 24);
    expect(digestOf(a)).toEqual(digestKvCache(cache));
    expect(digestOf(b)).toEqual(new Uint8Array(16));
    expect(reservedOf(a)).toEqual(new Uint8Array(16));
    expect(sameCache(decodeOkvBytes(b), cache)).toBe(true);
    expect(reasonOf(() => readOkvLayer(b, 0))).toBe("INVALID_FRAME");
  });

  it("random access applies the frame rules of the streaming decoder (flags, maxFrameBytes)", () => {
    const cache = randomCache(mhaDescriptor());
    const bytes = encodeOkvBytes(cache, { maxFrameBytes: 256 });
    const first = 16 + new DataView(bytes.buffer).getUint32(12, true) + 4; // layer 0's first frame
    const flagged = bytes.slice();
    flagged[first + 2] = 1;
    expect(reasonOf(() => decodeOkvBytes(flagged))).toBe("INVALID_FRAME");
    expect(reasonOf(() => readOkvLayer(flagged, 0))).toBe("INVALID_FRAME");
    // The same frames under a header that declares smaller frames.
    const small = encodeOkvBytes(cache, { maxFrameBytes: 255 });
    const headerLength = 16 + new DataView(small.buffer).getUint32(12, true) + 4;
    const lying = Uint8Array.from([...small.subarray(0, headerLength), ...bytes.subarray(first)]);
    expect(reasonOf(() => decodeOkvBytes(lying))).toBe("LENGTH_LIMIT");
    expect(reasonOf(() => readOkvLayer(lying, 0))).toBe("LENGTH_LIMIT");
  });

  it("reports the layer, part, offset and both CRCs on a corrupted frame", () => {
    const cache = randomCache(mhaDescriptor());
    const bytes = encodeOkvBytes(cache, { maxFrameBytes: 256 });
    const bad = bytes.slice();
    bad[bad.byteLength - 200] = (bad[bad.byteLength - 200] as number) ^ 1; // inside the last data frame of layer 2 part v
    expect(() => decodeOkvBytes(bad)).toThrow(
      /^\[data_loss\] layer 2 part v chunk at offset \d+: crc32c 0x[0-9a-f]{8}, expected 0x[0-9a-f]{8}$/,
    );
  });

  it("rejects a wrong digest, trailing bytes and a truncated stream", () => {
    const bytes = encodeOkvBytes(randomCache(mhaDescriptor()));
    const badDigest = bytes.slice();
    badDigest[badDigest.byteLength - 56] = (badDigest[badDigest.byteLength - 56] as number) ^ 1;
    expect(reasonOf(() => decodeOkvBytes(badDigest))).toBe("CHECKSUM_MISMATCH"); // trailer CRC first
    expect(reasonOf(() => decodeOkvBytes(Buffer.concat([bytes, Uint8Array.of(0)])))).toBe(
      "TRAILING_DATA",
    );
    expect(reasonOf(() => decodeOkvBytes(bytes.subarray(0, bytes.byteLength - 1)))).toBe(
      "TRUNCATED",
    );
    expect(reasonOf(() => decodeOkvBytes(bytes.subarray(0, 10)))).toBe("TRUNCATED");
  });
});

describe("createKvAssembler", () => {
  const descriptor = mhaDescriptor({ numLayers: 2, tokenCount: 4 });
  const cache = randomCache(descriptor);
  const chunks = [...toKvChunks(cache, { maxChunkBytes: 100 })];

  it("rebuilds layers from chunks and reports completion per layer", () => {
    const assembler = createKvAssembler(descriptor);
    const done = chunks.map((chunk) => assembler.accept(chunk)).filter((l) => l !== undefined);
    expect(done.map((l) => l.layer)).toEqual([0, 1]);
    expect(assembler.complete).toBe(true);
    expect(
      sameCache(
        fromKvParts(
          descriptor,
          done.map((l) => l.parts),
        ),
        cache,
      ),
    ).toBe(true);
  });

  it("rejects gaps, overlaps, reordering, bad CRCs and early ends", () => {
    const gap = createKvAssembler(descriptor);
    gap.accept(chunks[0]!);
    expect(reasonOf(() => gap.accept(chunks[2]!))).toBe("INVALID_OFFSETS");
    const overlap = createKvAssembler(descriptor);
    overlap.accept(chunks[0]!);
    expect(reasonOf(() => overlap.accept({ ...chunks[1]!, offsetBytes: 50 }))).toBe(
      "INVALID_OFFSETS",
    );
    const order = createKvAssembler(descriptor);
    expect(reasonOf(() => order.accept({ ...chunks[0]!, part: "v" }))).toBe("OUT_OF_ORDER");
    expect(reasonOf(() => order.accept({ ...chunks[0]!, crc32c: chunks[0]!.crc32c ^ 1 }))).toBe(
      "CHECKSUM_MISMATCH",
    );
    expect(reasonOf(() => order.accept({ ...chunks[0]!, data: new Uint8Array(1000) }))).toBe(
      "LENGTH_LIMIT",
    );
    expect(reasonOf(() => order.assertComplete())).toBe("TRUNCATED");
    expect(order.next).toEqual({ layer: 0, part: "k", offsetBytes: 0 });
  });

  it("adopts whole-part chunks only at the asked alignment, and marks layers it will not reuse stable", () => {
    const whole = [...toKvChunks(cache, { maxChunkBytes: 1 << 20 })];
    const at = (chunk: (typeof whole)[number], offset: number) => {
      const buffer = new Uint8Array(chunk.data.byteLength + 8);
      buffer.set(chunk.data, offset);
      return { ...chunk, data: buffer.subarray(offset, offset + chunk.data.byteLength) };
    };
    const adopting = createKvAssembler(descriptor, {
      adoptWholeParts: true,
      adoptAlignmentBytes: 8,
    });
    const aligned = at(whole[0]!, 8);
    const misaligned = at(whole[1]!, 3);
    adopting.accept(aligned);
    const layer = adopting.accept(misaligned)!;
    expect(layer.parts.k).toBe(aligned.data);
    expect(layer.parts.v!.buffer).not.toBe(misaligned.data.buffer);
    expect(layer.parts.v!.byteOffset % 8).toBe(0);
    expect(layer.parts.v).toEqual(cache.part(0, "v"));
    expect(layer.stable).toBe(true);

    const reusing = createKvAssembler(descriptor, { reuseBuffers: true });
    const first = whole.slice(0, 2).map((c) => reusing.accept(c))[1]!;
    expect(first.stable).toBeUndefined();
  });
});
