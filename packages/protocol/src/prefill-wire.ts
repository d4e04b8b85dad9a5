import { Code, OpalError, Reason } from "@opal/core";
import type { FetchEvent, PrefillEvent, PrefillRequest } from "@opal/driver";
import {
  fromWireChunk,
  fromWireFetchKvAccepted,
  fromWireFetchKvCompleted,
  fromWirePrefillAccepted,
  fromWirePrefillStats,
  fromWirePushProgress,
  fromWirePrefillRequest as fromWireReceivedPrefillRequest,
  toWireChunk,
  toWireFetchKvAccepted,
  toWireFetchKvCompleted,
  toWirePrefillAccepted,
  toWirePrefillStats,
  toWirePushProgress,
} from "./gen/mappers";
import type { opal } from "./gen/pb.js";

/**
 * A wire prefill request as a domain request, decoded without judging it (the generated
 * `ReceivedPrefillRequest`): a missing `kv_format` stays absent, an empty `decoder_prefix` is
 * absent, and an UNSPECIFIED or unknown enum (dtype, layout, scale scheme, sampling mode) decodes
 * to "" or a `Name(n)` string (`UnknownEnumValue`). The request goes to the driver as it was
 * received, which is what a driver's `prefill` gets on the wire too: `validatePrefillRequest`
 * (`@opal/driver`) takes the received type and reports each of them at its place in the `PF-1`
 * order (`GEN-3`). `data_plane` is not part of the domain request: whoever serves the call carries
 * the bytes (the server host for shared memory) and reads it from the wire message.
 */
export function fromWirePrefillRequest(
  w: opal.device.v1.PrefillRequest.$Properties,
): PrefillRequest {
  // The one widening left: PrefillDriver.prefill is typed with the validated shape although every
  // driver validates its argument first (see ReceivedPrefillRequest).
  return fromWireReceivedPrefillRequest(w) as PrefillRequest;
}

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
