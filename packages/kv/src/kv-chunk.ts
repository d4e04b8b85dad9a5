import { crc32cOf } from "./crc32c-of";
import {
  assertValidDescriptor,
  type KvDescriptor,
  type KvPart,
  partByteLength,
  partsOf,
} from "./descriptor";
import type { KvCache, KvLayerParts } from "./kv-cache";
import { KvFormatError } from "./kv-format-error";

/**
 * The stream unit shared by the device protocol and `.okv` frames: a piece of one layer part.
 * Chunks travel in canonical order: layers 0..n-1, within a layer the parts of `partsOf` in order,
 * within a part contiguous increasing offsets from 0 that cover the part exactly.
 */
export interface KvChunk {
  /** 0-based layer index. */
  readonly layer: number;
  readonly part: KvPart;
  /** Byte offset inside that layer part. */
  readonly offsetBytes: number;
  /** A view; receivers must not keep it past the next read unless they copy. */
  readonly data: Uint8Array;
  /** CRC32C (Castagnoli) of `data`, uint32. */
  readonly crc32c: number;
}

/** Default largest chunk payload of {@link createKvChunker}: 1 MiB. */
export const DEFAULT_MAX_CHUNK_BYTES = 1 << 20;
/** Largest chunk payload any reader accepts: 64 MiB. */
export const MAX_CHUNK_BYTES = 1 << 26;

/** Options of {@link createKvChunker}. */
export interface KvChunkerOptions {
  /** Largest `data` length per chunk, 1 to 64 MiB; default 1 MiB. */
  readonly maxChunkBytes?: number;
}

/** Splits layer parts into {@link KvChunk}s; chunk data are views of the input (no copy). */
export interface KvChunker {
  /** Chunks of one part (`partByteLength` bytes, SHAPE_MISMATCH otherwise), in offset order. */
  chunkPart(layer: number, part: KvPart, data: Uint8Array): Generator<KvChunk>;
  /** Chunks of every part of one layer, in canonical order. */
  chunkLayer(layer: KvLayerParts): Generator<KvChunk>;
}

/** Creates a {@link KvChunker} for `descriptor` (validated). */
export function createKvChunker(
  descriptor: KvDescriptor,
  options: KvChunkerOptions = {},
): KvChunker {
  assertValidDescriptor(descriptor);
  const maxChunkBytes = options.maxChunkBytes ?? DEFAULT_MAX_CHUNK_BYTES;
  if (
    !Number.isSafeInteger(maxChunkBytes) ||
    maxChunkBytes < 1 ||
    maxChunkBytes > MAX_CHUNK_BYTES
  ) {
    throw new KvFormatError(
      "OUT_OF_RANGE",
      `maxChunkBytes: expected an integer in [1, ${MAX_CHUNK_BYTES}], got ${maxChunkBytes}`,
      { field: "maxChunkBytes" },
    );
  }
  const parts = partsOf(descriptor);
  function* chunkPart(layer: number, part: KvPart, data: Uint8Array): Generator<KvChunk> {
    if (!Number.isInteger(layer) || layer < 0 || layer >= descriptor.numLayers) {
      throw new KvFormatError(
        "OUT_OF_RANGE",
        `layer ${layer} out of range (cache has ${descriptor.numLayers} layers)`,
        {
          field: "layer",
        },
      );
    }
    const expected = partByteLength(descriptor, part);
    if (data.byteLength !== expected) {
      throw new KvFormatError(
        "SHAPE_MISMATCH",
        `layer ${layer} part ${part}: ${data.byteLength} bytes, expected ${expected}`,
        { field: part },
      );
    }
    for (let offsetBytes = 0; offsetBytes < expected; offsetBytes += maxChunkBytes) {
      const length = Math.min(maxChunkBytes, expected - offsetBytes);
      const view = data.subarray(offsetBytes, offsetBytes + length);
      yield { layer, part, offsetBytes, data: view, crc32c: crc32cOf(view) };
    }
  }
  return {
    chunkPart,
    *chunkLayer(layer) {
      for (const part of parts) {
        const data = layer.parts[part];
        if (data === undefined) {
          throw new KvFormatError(
            "SHAPE_MISMATCH",
            `layer ${layer.layer} part ${part} is missing`,
            {
              field: part,
            },
          );
        }
        yield* chunkPart(layer.layer, part, data);
      }
    },
  };
}

/** All chunks of `cache` in canonical order; data are views of the cache. */
export function* toKvChunks(cache: KvCache, options: KvChunkerOptions = {}): Generator<KvChunk> {
  const chunker = createKvChunker(cache.descriptor, options);
  for (let layer = 0; layer < cache.descriptor.numLayers; layer++) {
    yield* chunker.chunkLayer(cache.layer(layer));
  }
}
