import { InvalidArgumentError } from "commander";

/** A commander argument parser accepting whole numbers >= 1, naming the flag in its error. */
export function parsePositiveInteger(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1)
      throw new InvalidArgumentError(`${flag} must be a whole number >= 1 (got ${value})`);
    return n;
  };
}
