import { Code, OpalError } from "@opal/core";
import type { KvDescriptor } from "./descriptor";
import { createKvAssembler, type KvAssembler } from "./kv-assembler";
import { fromKvParts, type KvCache, type KvLayerParts } from "./kv-cache";
import { type KvChunk, MAX_CHUNK_BYTES } from "./kv-chunk";
import { createKvDigest, KV_DIGEST_BYTE_LENGTH, type KvDigest } from "./kv-digest";
import { KvFormatError } from "./kv-format-error";
import {
  crc32cOfPayload,
  decodeOkvHeader,
  decodeOkvPreamble,
  getUint64,
  hex32,
  OKV_FRAME_HEADER_BYTES,
  OKV_PART_IDS,
  OKV_PREAMBLE_BYTES,
  OKV_TRAILER_PAYLOAD_BYTES,
  OkvFrameType,
  type OkvTrailer,
} from "./okv-format";

/** What {@link decodeOkv} and {@link createOkvDecoder} report, in stream order. */
export type OkvEvent =
  | { readonly kind: "header"; readonly descriptor: KvDescriptor; readonly maxFrameBytes: number }
  | { readonly kind: "layer"; readonly layer: KvLayerParts }
  /** Only with `chunks: true`: one verified DATA frame; `chunk.data` is valid until the next event. */
  | { readonly kind: "chunk"; readonly chunk: KvChunk }
  | { readonly kind: "trailer"; readonly trailer: OkvTrailer };

/** Options of the `.okv` decoders. */
export interface DecodeOkvOptions {
  /** Verify the trailer's whole-cache digest when present (DIGEST_MISMATCH); default true. */
  readonly verifyDigest?: boolean;
  /**
   * Parts that arrive as one frame inside one input chunk are returned as views of that input
   * chunk instead of copies; callers must then not reuse input buffers. Default true.
   */
  readonly adoptInput?: boolean;
  /**
   * Recycle the part buffers of the previous layer (and one frame buffer) instead of allocating:
   * memory stays at about one layer plus one frame, but the parts of a "layer" event are only valid
   * until the next event is requested (copy what you keep). Implies `adoptInput: false`. Default false.
   */
  readonly reuseLayerBuffers?: boolean;
  /**
   * Yield every verified DATA frame as a "chunk" event (the protocol's `KvChunk`) instead of
   * assembling layers: replaying a file as a stream with memory bounded by one frame. Default false.
   */
  readonly chunks?: boolean;
}

/** A push decoder: feed byte chunks, get events. Holds at most one layer plus one frame. */
export interface OkvDecoder {
  /**
   * Consumes `bytes` (any size, may be empty), yielding the events they complete one at a time;
   * parsing resumes only when the next event is requested. Iterate it to the end before the next call.
   */
  feed(bytes: Uint8Array): Generator<OkvEvent>;
  /** `feed` collected into an array; not allowed with `reuseLayerBuffers`. */
  push(bytes: Uint8Array): OkvEvent[];
  /** Signals end of input; throws TRUNCATED unless the trailer was read. */
  end(): void;
}

enum State {
  Preamble = 0,
  Header = 1,
  FrameHeader = 2,
  Payload = 3,
  Done = 4,
}

/** Creates a push {@link OkvDecoder}. */
export function createOkvDecoder(options: DecodeOkvOptions = {}): OkvDecoder {
  const verifyDigest = options.verifyDigest ?? true;
  const chunkMode = options.chunks ?? false;
  const reuse = chunkMode || (options.reuseLayerBuffers ?? false);
  const adopt = !reuse && (options.adoptInput ?? true);
  let state = State.Preamble;
  let need = OKV_PREAMBLE_BYTES;
  let staging: Uint8Array = new Uint8Array(OKV_PREAMBLE_BYTES);
  let staged = 0;
  let position = 0; // file offset of the next byte
  let descriptor: KvDescriptor | undefined;
  let maxFrameBytes = 0;
  let assembler: KvAssembler | undefined;
  let digest: KvDigest | undefined;
  let frame = { type: 0, partId: 0, layer: 0, offsetBytes: 0, length: 0, crc: 0, at: 0 };
  const layerOffsets: number[] = [];
  let lastLayerStarted = -1;
  let dataFrames = 0;
  let dataBytes = 0;
  let indexOffset = 0;

  let small = new Uint8Array(OKV_PREAMBLE_BYTES);
  let frameBuffer = new Uint8Array(0);
  const startStage = (length: number) => {
    need = length;
    staged = 0;
  };
  const chooseStaging = () => {
    // A DATA payload split across inputs goes straight to where the assembler keeps it, when the
    // frame is the one the assembler expects (others fail in `accept` and must not touch its buffers).
    const next = assembler?.next;
    const expected =
      state === State.Payload &&
      frame.type === OkvFrameType.DATA &&
      next !== undefined &&
      frame.layer === next.layer &&
      OKV_PART_IDS[frame.partId] === next.part &&
      frame.offsetBytes === next.offsetBytes;
    const target = expected ? assembler?.nextTarget(need) : undefined;
    if (target) {
      staging = target;
    } else if (state === State.Payload && reuse) {
      // The assembler copies in reuse mode: one frame buffer serves every frame.
      if (frameBuffer.byteLength < need) frameBuffer = new Uint8Array(need);
      staging = frameBuffer;
    } else if (state === State.Payload) {
      // Payloads get a fresh buffer: the assembler may adopt it as a part.
      staging = new Uint8Array(need);
    } else {
      if (small.byteLength < need) small = new Uint8Array(need);
      staging = small;
    }
  };

  const onFrameHeader = (bytes: Uint8Array) => {
    const view = new DataView(bytes.buffer, bytes.byteOffset, OKV_FRAME_HEADER_BYTES);
    const type = bytes[0] as number;
    const partId = bytes[1] as number;
    const flags = view.getUint16(2, true);
    const layer = view.getUint32(4, true);
    const offsetBytes = getUint64(view, 8, "frame offsetBytes");
    const length = view.getUint32(16, true);
    const crc = view.getUint32(20, true);
    const at = position - OKV_FRAME_HEADER_BYTES;
    if (flags !== 0)
      throw new KvFormatError(
        "INVALID_FRAME",
        `frame at offset ${at}: flags 0x${flags.toString(16)}, expected 0`,
      );
    if (type === OkvFrameType.DATA) {
      if (partId >= OKV_PART_IDS.length) {
        throw new KvFormatError(
          "INVALID_FRAME",
          `frame at offset ${at}: part id ${partId}, expected 0 to ${OKV_PART_IDS.length - 1}`,
        );
      }
      const limit = Math.min(maxFrameBytes, MAX_CHUNK_BYTES);
      if (length < 1 || length > limit) {
        throw new KvFormatError(
          "LENGTH_LIMIT",
          `frame at offset ${at}: payload ${length} bytes, expected 1 to ${limit}`,
        );
      }
      if (indexOffset !== 0)
        throw new KvFormatError("OUT_OF_ORDER", `DATA frame at offset ${at} after the INDEX frame`);
    } else if (type === OkvFrameType.INDEX || type === OkvFrameType.TRAILER) {
      if (partId !== 0 || layer !== 0 || offsetBytes !== 0) {
        throw new KvFormatError(
          "INVALID_FRAME",
          `frame type ${type} at offset ${at}: reserved fields are not 0`,
        );
      }
      const expected =
        type === OkvFrameType.INDEX
          ? 8 * (descriptor as KvDescriptor).numLayers
          : OKV_TRAILER_PAYLOAD_BYTES;
      if (length !== expected) {
        throw new KvFormatError(
          "LENGTH_LIMIT",
          `frame type ${type} at offset ${at}: payload ${length} bytes, expected ${expected}`,
        );
      }
      if (!(assembler as KvAssembler).complete) {
        const next = (assembler as KvAssembler).next;
        throw new KvFormatError(
          type === OkvFrameType.TRAILER ? "TRUNCATED" : "OUT_OF_ORDER",
          `frame type ${type} at offset ${at} before the end of the data (next expected layer ${next?.layer} part ${next?.part} offset ${next?.offsetBytes})`,
        );
      }
      if (type === OkvFrameType.INDEX && indexOffset !== 0) {
        throw new KvFormatError("OUT_OF_ORDER", `second INDEX frame at offset ${at}`);
      }
    } else {
      throw new KvFormatError(
        "INVALID_FRAME",
        `frame at offset ${at}: type ${type}, expected 1, 2 or 3`,
      );
    }
    frame = { type, partId, layer, offsetBytes, length, crc, at };
    state = State.Payload;
  };

  const onPayload = (payload: Uint8Array, events: OkvEvent[]) => {
    const a = assembler as KvAssembler;
    if (frame.type === OkvFrameType.DATA) {
      const part = OKV_PART_IDS[frame.partId] as (typeof OKV_PART_IDS)[number];
      if (frame.layer !== lastLayerStarted) {
        layerOffsets.push(frame.at);
        lastLayerStarted = frame.layer;
      }
      const chunk: KvChunk = {
        layer: frame.layer,
        part,
        offsetBytes: frame.offsetBytes,
        data: payload,
        crc32c: frame.crc,
      };
      const done = a.accept(chunk);
      digest?.update(payload);
      dataFrames++;
      dataBytes += payload.byteLength;
      if (chunkMode) events.push({ kind: "chunk", chunk });
      else if (done) events.push({ kind: "layer", layer: done });
    } else {
      const actual = crc32cOfPayload(payload);
      if (actual !== frame.crc) {
        throw new KvFormatError(
          "CHECKSUM_MISMATCH",
          `frame type ${frame.type} at offset ${frame.at}: crc32c 0x${hex32(actual)}, expected 0x${hex32(frame.crc)}`,
        );
      }
      const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
      if (frame.type === OkvFrameType.INDEX) {
        for (let i = 0; i < layerOffsets.length; i++) {
          const offset = getUint64(view, 8 * i, `index entry ${i}`);
          if (offset !== layerOffsets[i]) {
            throw new KvFormatError(
              "INVALID_OFFSETS",
              `index entry ${i}: offset ${offset}, expected ${layerOffsets[i]}`,
            );
          }
        }
        indexOffset = frame.at;
      } else {
        const flags = view.getUint32(44, true);
        if (flags > 1)
          throw new KvFormatError(
            "INVALID_FRAME",
            `trailer flags 0x${flags.toString(16)}, expected 0 or 1`,
          );
        const totalDataBytes = getUint64(view, 32, "trailer totalDataBytes");
        const dataFrameCount = view.getUint32(40, true);
        const trailerIndex = getUint64(view, 48, "trailer indexOffset");
        if (totalDataBytes !== dataBytes || dataFrameCount !== dataFrames) {
          throw new KvFormatError(
            "INVALID_FRAME",
            `trailer says ${totalDataBytes} bytes in ${dataFrameCount} frames, read ${dataBytes} bytes in ${dataFrames} frames`,
          );
        }
        if (trailerIndex !== indexOffset) {
          throw new KvFormatError(
            "INVALID_OFFSETS",
            `trailer indexOffset ${trailerIndex}, expected ${indexOffset}`,
          );
        }
        if (payload.subarray(KV_DIGEST_BYTE_LENGTH, 32).some((byte) => byte !== 0)) {
          throw new KvFormatError(
            "INVALID_FRAME",
            `trailer bytes ${KV_DIGEST_BYTE_LENGTH}..31 are reserved and must be zero (a file from a pre-release writer with a 32-byte SHA-256 digest?)`,
          );
        }
        const stored = flags & 1 ? payload.slice(0, KV_DIGEST_BYTE_LENGTH) : undefined;
        if (stored && digest) {
          const actualDigest = digest.digest();
          if (Buffer.compare(actualDigest, stored) !== 0) {
            throw new KvFormatError(
              "DIGEST_MISMATCH",
              `cache digest ${Buffer.from(actualDigest).toString("hex")}, expected ${Buffer.from(stored).toString("hex")}`,
            );
          }
        }
        state = State.Done;
        events.push({
          kind: "trailer",
          trailer: { digest: stored, totalDataBytes, dataFrameCount, indexOffset },
        });
        return;
      }
    }
    state = State.FrameHeader;
  };

  const onStaged = (bytes: Uint8Array, events: OkvEvent[]) => {
    if (state === State.Preamble) {
      const length = decodeOkvPreamble(bytes);
      state = State.Header;
      startStage(length + 4);
    } else if (state === State.Header) {
      const header = decodeOkvHeader(bytes.subarray(0, need));
      descriptor = header.descriptor;
      maxFrameBytes = header.maxFrameBytes;
      assembler = createKvAssembler(descriptor, {
        adoptWholeParts: !reuse,
        reuseBuffers: reuse,
        verifyOnly: chunkMode,
      });
      digest = verifyDigest ? createKvDigest() : undefined;
      state = State.FrameHeader;
      events.push({ kind: "header", descriptor, maxFrameBytes });
    } else if (state === State.FrameHeader) {
      onFrameHeader(bytes);
    } else if (state === State.Payload) {
      onPayload(bytes, events);
    }
    if (state === State.FrameHeader) startStage(OKV_FRAME_HEADER_BYTES);
    else if (state === State.Payload) startStage(frame.length);
  };

  return {
    *feed(input) {
      const events: OkvEvent[] = [];
      let offset = 0;
      while (offset < input.byteLength) {
        if (state === State.Done) {
          throw new KvFormatError(
            "TRAILING_DATA",
            `${input.byteLength - offset} bytes after the trailer at offset ${position}`,
          );
        }
        const available = input.byteLength - offset;
        if (staged === 0 && available >= need && (state !== State.Payload || adopt || reuse)) {
          // Whole unit inside this input chunk: use a view, no staging copy (in reuse mode the
          // assembler copies it before the next event).
          const view = input.subarray(offset, offset + need);
          offset += need;
          position += need;
          onStaged(view, events);
        } else {
          if (staged === 0) chooseStaging();
          const take = Math.min(need - staged, available);
          staging.set(input.subarray(offset, offset + take), staged);
          staged += take;
          offset += take;
          position += take;
          if (staged === need) {
            const unit = staging.subarray(0, need);
            staged = 0;
            onStaged(unit, events);
          }
        }
        // Hand events out before parsing further, so reused layer buffers are consumed first.
        while (events.length > 0) yield events.shift() as OkvEvent;
      }
    },
    push(input) {
      if (reuse) {
        throw new OpalError(
          Code.FAILED_PRECONDITION,
          "push() cannot be used with reuseLayerBuffers; iterate feed() instead",
        );
      }
      return Array.from(this.feed(input));
    },
    end() {
      if (state !== State.Done) {
        throw new KvFormatError(
          "TRUNCATED",
          `stream ended at offset ${position} ${state === State.Preamble || state === State.Header ? "inside the header" : "before the trailer"}`,
        );
      }
    },
  };
}

/**
 * Decodes an `.okv` byte stream (any chunking) into events: the header first, each layer as soon
 * as its last frame is verified, the trailer last. Memory is bounded by one layer plus one frame
 * (and the layers the consumer keeps). Throws {@link KvFormatError} on any defect.
 */
export async function* decodeOkv(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: DecodeOkvOptions = {},
): AsyncGenerator<OkvEvent> {
  const decoder = createOkvDecoder(options);
  for await (const bytes of source) yield* decoder.feed(bytes);
  decoder.end();
}

/** Decodes a whole in-memory `.okv` file into a cache whose parts may be views of `bytes`. */
export function decodeOkvBytes(bytes: Uint8Array, options: DecodeOkvOptions = {}): KvCache {
  const decoder = createOkvDecoder(options);
  const events = decoder.push(bytes);
  decoder.end();
  let descriptor: KvDescriptor | undefined;
  const layers: KvLayerParts["parts"][] = [];
  for (const event of events) {
    if (event.kind === "header") descriptor = event.descriptor;
    else if (event.kind === "layer") layers.push(event.layer.parts);
  }
  return fromKvParts(descriptor as KvDescriptor, layers);
}
