import type { UnknownEnumValue } from "./unknown-enum-value";

/**
 * How the first generated token is chosen (`opal.device.v1.Sampling`, a union on its mode);
 * greedy by default. `topK` 0 or absent means the whole vocabulary.
 */
export type Sampling =
  | { readonly mode: "greedy" }
  | {
      readonly mode: "seeded";
      readonly seed: number;
      readonly temperature: number;
      readonly topK?: number;
    };

/** Sampling as received, before validation: the mode may be UNSPECIFIED or unknown (`GEN-3`). */
export type ReceivedSampling = Sampling | { readonly mode: UnknownEnumValue<"SamplingMode"> };
