import { Code, OpalError } from "@opal/core";
import type { KvDescriptor } from "./descriptor";
import { fromKvParts, type KvCache, type KvLayerParts } from "./kv-cache";
import { KvFormatError } from "./kv-format-error";
import { feedOkvDecoder } from "./okv-decoder/feed-okv-decoder";
import { createOkvDecoderState, OkvStage } from "./okv-decoder/okv-decoder-state";
import type { OkvEvent } from "./okv-event";

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

/** Creates a push {@link OkvDecoder}. */
export function createOkvDecoder(options: DecodeOkvOptions = {}): OkvDecoder {
  const chunkMode = options.chunks ?? false;
  const reuse = chunkMode || (options.reuseLayerBuffers ?? false);
  const state = createOkvDecoderState({
    verifyDigest: options.verifyDigest ?? true,
    chunkMode,
    reuse,
    adopt: !reuse && (options.adoptInput ?? true),
  });
  return {
    feed: (input) => feedOkvDecoder(state, input),
    push(input) {
      if (reuse) {
        throw new OpalError(
          Code.FAILED_PRECONDITION,
          "push() cannot be used with reuseLayerBuffers; iterate feed() instead",
        );
      }
      return Array.from(feedOkvDecoder(state, input));
    },
    end() {
      if (state.stage !== OkvStage.Done) {
        const where =
          state.stage === OkvStage.Preamble || state.stage === OkvStage.Header
            ? "inside the header"
            : "before the trailer";
        throw new KvFormatError("TRUNCATED", `stream ended at offset ${state.position} ${where}`);
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
