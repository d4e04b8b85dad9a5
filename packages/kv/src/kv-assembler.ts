import { crc32cOf } from "./crc32c-of";
import {
  assertValidDescriptor,
  type KvDescriptor,
  type KvPart,
  partByteLength,
  partsOf,
} from "./descriptor";
import type { KvLayerParts } from "./kv-cache";
import { type KvChunk, MAX_CHUNK_BYTES } from "./kv-chunk";
import { KvFormatError } from "./kv-format-error";

/** Where the next chunk must start; `undefined` once the cache is complete. */
export interface KvStreamPosition {
  readonly layer: number;
  readonly part: KvPart;
  readonly offsetBytes: number;
}

/** Options of {@link createKvAssembler}. */
export interface KvAssemblerOptions {
  /**
   * Parts up to this many bytes are allocated whole when their first chunk arrives; larger parts
   * start at 1 MiB and grow by doubling as data arrive, so a lying descriptor cannot force an
   * allocation beyond about twice the bytes received (plus this bound). Default 64 MiB.
   */
  readonly eagerAllocBytes?: number;
  /**
   * When true, a chunk covering a whole part is adopted as the part's view instead of copied; only
   * for callers that own the chunk buffers (e.g. the `.okv` decoder). Default false.
   */
  readonly adoptWholeParts?: boolean;
  /**
   * With `adoptWholeParts`, adopt only chunks whose data start at a multiple of this many bytes in
   * their buffer (others are copied into fresh, aligned memory), so that every part can be viewed
   * as a typed array. Default 1 (any offset).
   */
  readonly adoptAlignmentBytes?: number;
  /**
   * When true, the part buffers of a completed layer are reused for the next layer: a returned
   * layer is valid only until the next `accept` (otherwise layers are marked `stable`). Bounds memory to one
   * layer. Default false.
   */
  readonly reuseBuffers?: boolean;
  /**
   * When true, chunks are verified (CRC, order, sizes) but not stored: completed layers come back
   * with empty `parts`. For relaying or recording a stream without assembling it. Default false.
   */
  readonly verifyOnly?: boolean;
}

/**
 * Rebuilds layers from {@link KvChunk}s in canonical order, verifying each chunk's CRC32C, its
 * position (no gap, overlap, reorder) and size. Used by clients and by the `.okv` decoder.
 */
export interface KvAssembler {
  /**
   * Verifies and stores `chunk` (its data are copied unless adopted). Returns the completed layer
   * when this chunk ends one, else `undefined`. Throws {@link KvFormatError}: CHECKSUM_MISMATCH
   * (DATA_LOSS), OUT_OF_ORDER, INVALID_OFFSETS, LENGTH_LIMIT, OUT_OF_RANGE.
   */
  accept(chunk: KvChunk): KvLayerParts | undefined;
  /**
   * Where the next chunk's `length` bytes will be stored when the assembler copies (not with
   * `verifyOnly`), or `undefined` when it would not copy them there (a whole part it would adopt,
   * or a length past the part). A caller that fills this view and passes it as the chunk's `data`
   * saves a copy: `accept` then verifies the bytes in place. Valid until the next `accept`.
   */
  nextTarget(length: number): Uint8Array | undefined;
  /** The position the next chunk must start at; `undefined` when all layers are complete. */
  readonly next: KvStreamPosition | undefined;
  /** True when every layer has been completed. */
  readonly complete: boolean;
  /** Throws TRUNCATED (DATA_LOSS) unless complete. */
  assertComplete(): void;
}

/** Creates a {@link KvAssembler} for `descriptor` (validated). */
export function createKvAssembler(
  descriptor: KvDescriptor,
  options: KvAssemblerOptions = {},
): KvAssembler {
  assertValidDescriptor(descriptor);
  const eager = options.eagerAllocBytes ?? 64 << 20;
  const adopt = options.adoptWholeParts ?? false;
  const alignment = options.adoptAlignmentBytes ?? 1;
  const reuse = options.reuseBuffers ?? false;
  const verifyOnly = options.verifyOnly ?? false;
  let recycled: Partial<Record<KvPart, Uint8Array>> = {};
  const parts = partsOf(descriptor);
  const lengths = parts.map((part) => partByteLength(descriptor, part));
  let layer = 0;
  let partIndex = 0;
  let offset = 0;
  let buffer: Uint8Array | undefined;
  let current: Partial<Record<KvPart, Uint8Array>> = {};

  /** The current part's buffer, allocated or grown to hold `end` bytes. */
  const reserve = (part: KvPart, end: number, length: number): Uint8Array => {
    const partLength = lengths[partIndex] as number;
    const spare = reuse ? recycled[part] : undefined;
    if (buffer === undefined && spare !== undefined && spare.byteLength === partLength) {
      buffer = spare;
    } else if (buffer === undefined) {
      buffer = new Uint8Array(partLength <= eager ? partLength : Math.max(1 << 20, length));
    } else if (buffer.byteLength < end) {
      const grown = new Uint8Array(Math.min(partLength, Math.max(buffer.byteLength * 2, end)));
      grown.set(buffer.subarray(0, end - length));
      buffer = grown;
    }
    return buffer;
  };

  const position = (): KvStreamPosition | undefined =>
    layer < descriptor.numLayers
      ? { layer, part: parts[partIndex] as KvPart, offsetBytes: offset }
      : undefined;

  return {
    get next() {
      return position();
    },
    nextTarget(length) {
      const at = position();
      const partLength = lengths[partIndex] as number;
      if (!at || verifyOnly || length < 1 || offset + length > partLength) return undefined;
      if (adopt && offset === 0 && length === partLength) return undefined;
      return reserve(at.part, offset + length, length).subarray(offset, offset + length);
    },
    get complete() {
      return layer >= descriptor.numLayers;
    },
    assertComplete() {
      const at = position();
      if (at) {
        throw new KvFormatError(
          "TRUNCATED",
          `stream ended at layer ${at.layer} part ${at.part} offset ${at.offsetBytes}, expected ${descriptor.numLayers} complete layers`,
        );
      }
    },
    accept(chunk) {
      const at = position();
      const where = `layer ${chunk.layer} part ${chunk.part} chunk at offset ${chunk.offsetBytes}`;
      if (!at) {
        throw new KvFormatError("OUT_OF_ORDER", `${where}: cache already complete`);
      }
      if (chunk.layer !== at.layer || chunk.part !== at.part) {
        throw new KvFormatError(
          "OUT_OF_ORDER",
          `${where}: expected layer ${at.layer} part ${at.part} offset ${at.offsetBytes}`,
        );
      }
      if (chunk.offsetBytes !== offset) {
        throw new KvFormatError(
          "INVALID_OFFSETS",
          `${where}: expected offset ${offset} (${chunk.offsetBytes < offset ? "overlap" : "gap"})`,
        );
      }
      const length = chunk.data.byteLength;
      const partLength = lengths[partIndex] as number;
      if (length === 0 || length > MAX_CHUNK_BYTES || offset + length > partLength) {
        throw new KvFormatError(
          "LENGTH_LIMIT",
          `${where}: ${length} bytes, expected 1 to ${Math.min(MAX_CHUNK_BYTES, partLength - offset)}`,
        );
      }
      const crc = crc32cOf(chunk.data);
      if (crc !== chunk.crc32c >>> 0) {
        throw new KvFormatError(
          "CHECKSUM_MISMATCH",
          `${where}: crc32c 0x${hex32(crc)}, expected 0x${hex32(chunk.crc32c >>> 0)}`,
        );
      }
      if (verifyOnly) {
        // Nothing stored.
      } else if (
        adopt &&
        offset === 0 &&
        length === partLength &&
        chunk.data.byteOffset % alignment === 0
      ) {
        buffer = chunk.data;
      } else {
        const target = reserve(chunk.part, offset + length, length);
        const inPlace =
          chunk.data.buffer === target.buffer &&
          chunk.data.byteOffset === target.byteOffset + offset;
        if (!inPlace) target.set(chunk.data, offset);
      }
      offset += length;
      if (offset < partLength) return undefined;
      if (buffer) current[chunk.part] = buffer;
      buffer = undefined;
      offset = 0;
      partIndex++;
      if (partIndex < parts.length) return undefined;
      const done: KvLayerParts = reuse
        ? { layer, parts: current }
        : { layer, parts: current, stable: true };
      if (reuse) recycled = current;
      current = {};
      partIndex = 0;
      layer++;
      return done;
    },
  };
}

function hex32(value: number): string {
  return value.toString(16).padStart(8, "0");
}
