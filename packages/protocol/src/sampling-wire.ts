import type { ReceivedSampling, Sampling } from "@opal/driver";
import { samplingModeEnum } from "./gen/enums";
import type { opal } from "./gen/pb.js";

/** Sampling as its wire message: greedy carries only its mode. */
export function toWireSampling(sampling: Sampling): opal.device.v1.Sampling.$Properties {
  if (sampling.mode === "greedy") return { mode: samplingModeEnum.toWire("greedy") };
  return {
    mode: samplingModeEnum.toWire("seeded"),
    seed: sampling.seed,
    temperature: sampling.temperature,
    topK: sampling.topK ?? 0,
  };
}

/**
 * A wire `Sampling` decoded without judging: an UNSPECIFIED or unknown mode stays as its
 * `UnknownEnumValue` for `validatePrefillRequest` to reject (`GEN-3`).
 */
export function fromWireSampling(w: opal.device.v1.Sampling.$Properties): ReceivedSampling {
  const mode = samplingModeEnum.decode(w.mode);
  if (mode !== "seeded") return { mode };
  return {
    mode,
    seed: Number(w.seed ?? 0),
    temperature: w.temperature ?? 0,
    topK: w.topK ?? 0,
  };
}
