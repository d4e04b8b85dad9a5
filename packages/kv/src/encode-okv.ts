import { crc32cOf } from "./crc32c-of";
import { assertValidDescriptor, type KvDescriptor } from "./descriptor";
import { createKvAssembler } from "./kv-assembler";
import type { KvCache, KvLayerParts } from "./kv-cache";
import { createKvChunker, type KvChunk, MAX_CHUNK_BYTES } from "./kv-chunk";
import { createKvDigest } from "./kv-digest";
import { KvFormatError } from "./kv-format-error";
import {
  encodeOkvFrameHeader,
  encodeOkvHead,
  OKV_DEFAULT_MAX_FRAME_BYTES,
  OKV_FRAME_HEADER_BYTES,
  OKV_PART_IDS,
  OKV_TRAILER_PAYLOAD_BYTES,
  OkvFrameType,
  setUint64,
} from "./okv-format";

/** Options of {@link encodeOkv} and {@link encodeOkvBytes}. */
export interface EncodeOkvOptions {
  /** Required when the source is not a `KvCache`; ignored otherwise. */
  readonly descriptor?: KvDescriptor;
  /** Largest DATA payload, 1 byte to 64 MiB; default 16 MiB. */
  readonly maxFrameBytes?: number;
  /** Write the INDEX frame (random access by layer); default true. */
  readonly index?: boolean;
  /** Compute the whole-cache digest (XXH3-128) for the trailer; default true. */
  readonly computeDigest?: boolean;
}

type LayerSource = KvCache | Iterable<KvLayerParts> | AsyncIterable<KvLayerParts>;

function isKvCache(source: LayerSource): source is KvCache {
  return typeof (source as KvCache).part === "function" && "descriptor" in source;
}

/** Turns layers into `.okv` pieces; shared by the sync and async encoders. */
function createOkvWriter(descriptor: KvDescriptor, options: EncodeOkvOptions) {
  assertValidDescriptor(descriptor);
  const maxFrameBytes = options.maxFrameBytes ?? OKV_DEFAULT_MAX_FRAME_BYTES;
  if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 1 || maxFrameBytes > MAX_CHUNK_BYTES) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `maxFrameBytes: expected 1 to ${MAX_CHUNK_BYTES}, got ${maxFrameBytes}`,
    );
  }
  const chunker = createKvChunker(descriptor, { maxChunkBytes: maxFrameBytes });
  const digest = options.computeDigest === false ? undefined : createKvDigest();
  const layerOffsets: number[] = [];
  let position = 0;
  let frames = 0;
  let dataBytes = 0;
  let nextLayer = 0;
  return {
    *head(): Generator<Uint8Array> {
      const head = encodeOkvHead({ descriptor, maxFrameBytes });
      position += head.byteLength;
      yield head;
    },
    *layer(layer: KvLayerParts): Generator<Uint8Array> {
      if (layer.layer !== nextLayer) {
        throw new KvFormatError(
          "OUT_OF_ORDER",
          `got layer ${layer.layer}, expected layer ${nextLayer}`,
        );
      }
      for (const chunk of chunker.chunkLayer(layer)) yield* this.chunk(chunk);
    },
    /** One DATA frame for `chunk`; callers guarantee canonical order. */
    *chunk(chunk: KvChunk): Generator<Uint8Array> {
      if (chunk.data.byteLength > maxFrameBytes) {
        throw new KvFormatError(
          "LENGTH_LIMIT",
          `chunk of ${chunk.data.byteLength} bytes exceeds maxFrameBytes ${maxFrameBytes}`,
        );
      }
      if (chunk.layer === nextLayer) {
        nextLayer++;
        layerOffsets.push(position);
      }
      const header = encodeOkvFrameHeader(
        OkvFrameType.DATA,
        OKV_PART_IDS.indexOf(chunk.part),
        chunk.layer,
        chunk.offsetBytes,
        chunk.data,
        chunk.crc32c,
      );
      digest?.update(chunk.data);
      position += OKV_FRAME_HEADER_BYTES + chunk.data.byteLength;
      dataBytes += chunk.data.byteLength;
      frames++;
      yield header;
      yield chunk.data;
    },
    *tail(): Generator<Uint8Array> {
      if (nextLayer !== descriptor.numLayers) {
        throw new KvFormatError(
          "TRUNCATED",
          `source ended after ${nextLayer} layers, expected ${descriptor.numLayers}`,
        );
      }
      let indexOffset = 0;
      if (options.index !== false) {
        const payload = new Uint8Array(8 * descriptor.numLayers);
        const view = new DataView(payload.buffer);
        for (let i = 0; i < layerOffsets.length; i++)
          setUint64(view, 8 * i, layerOffsets[i] as number);
        indexOffset = position;
        yield encodeOkvFrameHeader(OkvFrameType.INDEX, 0, 0, 0, payload, crc32cOf(payload));
        yield payload;
        position += OKV_FRAME_HEADER_BYTES + payload.byteLength;
      }
      const payload = new Uint8Array(OKV_TRAILER_PAYLOAD_BYTES);
      const view = new DataView(payload.buffer);
      if (digest) payload.set(digest.digest(), 0);
      setUint64(view, 32, dataBytes);
      view.setUint32(40, frames, true);
      view.setUint32(44, digest ? 1 : 0, true);
      setUint64(view, 48, indexOffset);
      yield encodeOkvFrameHeader(OkvFrameType.TRAILER, 0, 0, 0, payload, crc32cOf(payload));
      yield payload;
    },
  };
}

/**
 * Encodes a cache, or layers arriving in order (with `options.descriptor`), as an `.okv` stream
 * (docs/formats/okv.md). Yields byte pieces to write in order: frame payloads are views of the
 * source parts (no copy), so a consumer must write or copy each piece before the source changes.
 */
export async function* encodeOkv(
  source: LayerSource,
  options: EncodeOkvOptions = {},
): AsyncGenerator<Uint8Array> {
  if (isKvCache(source)) {
    yield* encodeOkvPieces(source, options);
    return;
  }
  const descriptor = options.descriptor;
  if (!descriptor)
    throw new KvFormatError(
      "INVALID_DESCRIPTOR",
      "encodeOkv: options.descriptor is required for a layer stream",
    );
  const writer = createOkvWriter(descriptor, options);
  yield* writer.head();
  for await (const layer of source) yield* writer.layer(layer);
  yield* writer.tail();
}

/** Options of {@link encodeOkvChunks}. */
export interface EncodeOkvChunksOptions extends EncodeOkvOptions {
  readonly descriptor: KvDescriptor;
}

/**
 * Records a chunk stream (e.g. what the device protocol delivered) as an `.okv` file without
 * re-chunking: one DATA frame per chunk, so the file is the stream. Chunks are verified (CRC,
 * canonical order, sizes) as they pass; an incomplete stream throws TRUNCATED. `maxFrameBytes`
 * (default 64 MiB) is written to the header and must bound every chunk.
 */
export async function* encodeOkvChunks(
  chunks: AsyncIterable<KvChunk> | Iterable<KvChunk>,
  options: EncodeOkvChunksOptions,
): AsyncGenerator<Uint8Array> {
  const writer = createOkvWriter(options.descriptor, {
    ...options,
    maxFrameBytes: options.maxFrameBytes ?? MAX_CHUNK_BYTES,
  });
  const checker = createKvAssembler(options.descriptor, { verifyOnly: true });
  yield* writer.head();
  for await (const chunk of chunks) {
    checker.accept(chunk);
    yield* writer.chunk(chunk);
  }
  checker.assertComplete();
  yield* writer.tail();
}

/** The pieces of {@link encodeOkv} for an in-memory cache, synchronously. */
export function* encodeOkvPieces(
  cache: KvCache,
  options: EncodeOkvOptions = {},
): Generator<Uint8Array> {
  const writer = createOkvWriter(cache.descriptor, options);
  yield* writer.head();
  for (let layer = 0; layer < cache.descriptor.numLayers; layer++)
    yield* writer.layer(cache.layer(layer));
  yield* writer.tail();
}

/** Encodes `cache` as one `.okv` byte array (a copy of the whole cache plus framing). */
export function encodeOkvBytes(cache: KvCache, options: EncodeOkvOptions = {}): Uint8Array {
  const pieces = [...encodeOkvPieces(cache, options)];
  let total = 0;
  for (const piece of pieces) total += piece.byteLength;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const piece of pieces) {
    out.set(piece, offset);
    offset += piece.byteLength;
  }
  return out;
}
