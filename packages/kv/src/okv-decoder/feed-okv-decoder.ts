import { KvFormatError } from "../kv-format-error";
import type { OkvEvent } from "../okv-event";
import { chooseOkvStaging } from "./choose-okv-staging";
import { decodeOkvUnit } from "./decode-okv-unit";
import { type OkvDecoderState, OkvStage } from "./okv-decoder-state";

/**
 * Consumes `input`, yielding the events it completes one at a time; parsing resumes only when the
 * next event is requested. A unit wholly inside `input` is decoded from a view of it (payloads only
 * when adopting or reusing); one that spans inputs is collected first. Throws TRAILING_DATA for
 * bytes after the trailer, and {@link KvFormatError} on any defect.
 */
export function* feedOkvDecoder(state: OkvDecoderState, input: Uint8Array): Generator<OkvEvent> {
  const events: OkvEvent[] = [];
  let offset = 0;
  while (offset < input.byteLength) {
    if (state.stage === OkvStage.Done) {
      throw new KvFormatError(
        "TRAILING_DATA",
        `${input.byteLength - offset} bytes after the trailer at offset ${state.position}`,
      );
    }
    const available = input.byteLength - offset;
    const need = state.need;
    if (
      state.staged === 0 &&
      available >= need &&
      (state.stage !== OkvStage.Payload || state.adopt || state.reuse)
    ) {
      // Whole unit inside this input chunk: use a view, no staging copy (in reuse mode the
      // assembler copies it before the next event).
      const view = input.subarray(offset, offset + need);
      offset += need;
      state.position += need;
      decodeOkvUnit(state, view, events);
    } else {
      if (state.staged === 0) chooseOkvStaging(state);
      const take = Math.min(need - state.staged, available);
      state.staging.set(input.subarray(offset, offset + take), state.staged);
      state.staged += take;
      offset += take;
      state.position += take;
      if (state.staged === need) {
        const unit = state.staging.subarray(0, need);
        state.staged = 0;
        decodeOkvUnit(state, unit, events);
      }
    }
    // Hand events out before parsing further, so reused layer buffers are consumed first.
    while (events.length > 0) yield events.shift() as OkvEvent;
  }
}
