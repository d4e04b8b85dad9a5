import { Code, OpalError, Reason } from "@opal/core";
import type { FetchEvent, PrefillEvent } from "@opal/driver";
import {
  fromWireChunk,
  fromWireFetchKvAccepted,
  fromWireFetchKvCompleted,
  fromWirePrefillAccepted,
  fromWirePrefillStats,
  fromWirePushProgress,
  toWireChunk,
  toWireFetchKvAccepted,
  toWireFetchKvCompleted,
  toWirePrefillAccepted,
  toWirePrefillStats,
  toWirePushProgress,
} from "./gen/mappers";
import type { opal } from "./gen/pb.js";

/** A prefill event as a `PrefillResponse` message. */
export function toWirePrefillEvent(e: PrefillEvent): opal.device.v1.PrefillResponse.$Properties {
  switch (e.type) {
    case "accepted":
      return { accepted: toWirePrefillAccepted(e) };
    case "chunk":
      return { chunk: toWireChunk(e.chunk) };
    case "push_progress":
      return { pushProgress: toWirePushProgress(e) };
    case "completed":
      return { completed: toWirePrefillStats(e.stats) };
  }
}

/**
 * A `PrefillResponse` message as a prefill event; a message with no event set, or an `accepted`
 * without its descriptor, is a protocol error (INTERNAL STREAM_INCOMPLETE).
 */
export function fromWirePrefillEvent(w: opal.device.v1.PrefillResponse.$Properties): PrefillEvent {
  if (w.chunk) return { type: "chunk", chunk: fromWireChunk(w.chunk) };
  if (w.accepted) {
    if (!w.accepted.descriptor) throw protocolError("accepted.descriptor is missing");
    return { type: "accepted", ...fromWirePrefillAccepted(w.accepted) };
  }
  if (w.pushProgress) return { type: "push_progress", ...fromWirePushProgress(w.pushProgress) };
  if (w.completed) return { type: "completed", stats: fromWirePrefillStats(w.completed) };
  throw protocolError("a PrefillResponse carried no event");
}

/** A fetch event as a `FetchKvResponse` message. */
export function toWireFetchEvent(e: FetchEvent): opal.device.v1.FetchKvResponse.$Properties {
  switch (e.type) {
    case "accepted":
      return { accepted: toWireFetchKvAccepted(e) };
    case "chunk":
      return { chunk: toWireChunk(e.chunk) };
    case "completed":
      return { completed: toWireFetchKvCompleted(e) };
  }
}

/** A `FetchKvResponse` message as a fetch event; the same protocol errors as prefill events. */
export function fromWireFetchEvent(w: opal.device.v1.FetchKvResponse.$Properties): FetchEvent {
  if (w.chunk) return { type: "chunk", chunk: fromWireChunk(w.chunk) };
  if (w.accepted) {
    if (!w.accepted.descriptor) throw protocolError("accepted.descriptor is missing");
    return { type: "accepted", ...fromWireFetchKvAccepted(w.accepted) };
  }
  if (w.completed) return { type: "completed", ...fromWireFetchKvCompleted(w.completed) };
  throw protocolError("a FetchKvResponse carried no event");
}

function protocolError(message: string): OpalError {
  return new OpalError(Code.INTERNAL, `protocol violation: ${message}`, {
    reason: Reason.STREAM_INCOMPLETE,
  });
}
