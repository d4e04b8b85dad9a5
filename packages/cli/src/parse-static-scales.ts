import { InvalidArgumentError } from "commander";

/**
 * A commander argument parser for a decoder's static KV scales: one number for every layer
 * (`1.0`) or one per layer, comma-separated (`0.5,0.7`); each finite and > 0. Names the flag in
 * its error.
 */
export function parseStaticScales(flag: string): (value: string) => number[] {
  return (value) => {
    const scales = value.split(",").map((word) => Number(word.trim()));
    const bad = scales.findIndex((s) => !Number.isFinite(s) || s <= 0);
    if (value.trim() === "" || bad >= 0)
      throw new InvalidArgumentError(
        `${flag} takes one scale or one per layer, comma-separated, each a number > 0 (got ${value})`,
      );
    return scales;
  };
}
