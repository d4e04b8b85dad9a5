import type { KvDescriptor } from "../descriptor";
import type { KvAssembler } from "../kv-assembler";
import type { KvDigest } from "../kv-digest";
import { OKV_PREAMBLE_BYTES } from "../okv-format";

/** Where an `.okv` decoder is in the file: what the next unit of bytes it stages is. */
export enum OkvStage {
  Preamble = 0,
  Header = 1,
  FrameHeader = 2,
  Payload = 3,
  Done = 4,
}

/** A checked frame header: the frame whose payload is read next. */
export interface OkvFrame {
  readonly type: number;
  readonly partId: number;
  readonly layer: number;
  readonly offsetBytes: number;
  /** Payload length, bytes. */
  readonly length: number;
  /** CRC32C of the payload, as stored. */
  readonly crc: number;
  /** File offset of the frame header. */
  readonly at: number;
}

/** How a decoder treats buffers, resolved from `DecodeOkvOptions`. */
export interface OkvDecoderModes {
  /** Verify the trailer's digest when present. */
  readonly verifyDigest: boolean;
  /** Yield DATA frames as "chunk" events instead of assembling layers. */
  readonly chunkMode: boolean;
  /** Recycle part buffers and one frame buffer (implied by `chunkMode`). */
  readonly reuse: boolean;
  /** Keep whole parts as views of the input (never with `reuse`). */
  readonly adopt: boolean;
}

/**
 * The whole state of a push `.okv` decoder. Framing: the stage, the length of the unit it waits for
 * (`need`), and the bytes staged so far when a unit spans inputs. Header: the descriptor and what
 * was built from it. Data: what the INDEX and the trailer are checked against.
 */
export interface OkvDecoderState extends OkvDecoderModes {
  stage: OkvStage;
  /** Length of the unit being read, bytes. */
  need: number;
  /** Where a unit split across inputs is collected. */
  staging: Uint8Array;
  /** Bytes of the unit collected in `staging`. */
  staged: number;
  /** File offset of the next input byte. */
  position: number;
  /** Staging of preamble, header and frame headers, grown as needed. */
  small: Uint8Array;
  /** Staging of payloads in reuse mode, grown as needed. */
  frameBuffer: Uint8Array;
  descriptor: KvDescriptor | undefined;
  /** Largest DATA payload the header allows, bytes. */
  maxFrameBytes: number;
  assembler: KvAssembler | undefined;
  /** The running whole-cache digest, when verified. */
  digest: KvDigest | undefined;
  /** The frame whose payload is read next. */
  frame: OkvFrame;
  /** File offset of each layer's first frame, for the INDEX check. */
  readonly layerOffsets: number[];
  lastLayerStarted: number;
  dataFrames: number;
  dataBytes: number;
  /** File offset of the INDEX frame header; 0 until one is read. */
  indexOffset: number;
}

/** A decoder at the start of a file, waiting for the preamble. */
export function createOkvDecoderState(modes: OkvDecoderModes): OkvDecoderState {
  return {
    ...modes,
    stage: OkvStage.Preamble,
    need: OKV_PREAMBLE_BYTES,
    staging: new Uint8Array(OKV_PREAMBLE_BYTES),
    staged: 0,
    position: 0,
    small: new Uint8Array(OKV_PREAMBLE_BYTES),
    frameBuffer: new Uint8Array(0),
    descriptor: undefined,
    maxFrameBytes: 0,
    assembler: undefined,
    digest: undefined,
    frame: { type: 0, partId: 0, layer: 0, offsetBytes: 0, length: 0, crc: 0, at: 0 },
    layerOffsets: [],
    lastLayerStarted: -1,
    dataFrames: 0,
    dataBytes: 0,
    indexOffset: 0,
  };
}
