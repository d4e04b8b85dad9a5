import { InvalidArgumentError } from "commander";
import { type MockProfileName, toMockProfileNames } from "../mock-profile";

/** A commander parser of whole numbers in `min..max` (digits only), naming the flag in its error. */
export const wholeNumber =
  (flag: string, min: number, max = Number.MAX_SAFE_INTEGER) =>
  (value: string) => {
    const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
    if (!(n >= min && n <= max)) {
      const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in ${min}..${max}`;
      throw new InvalidArgumentError(`${flag} must be a whole number ${range} (got ${value})`);
    }
    return n;
  };

/** A commander parser of a number strictly between 0 and 1, naming the flag in its error. */
export const fraction = (flag: string) => (value: string) => {
  const n = /^\d*\.?\d+(e-?\d+)?$/i.test(value) ? Number(value) : Number.NaN;
  if (!(n > 0 && n < 1)) {
    throw new InvalidArgumentError(`${flag} must be a number between 0 and 1 (got ${value})`);
  }
  return n;
};

/** A commander parser of `--profile`: one of the mock's profile names. */
export function profileName(value: string): MockProfileName {
  const name = toMockProfileNames().find((n) => n === value);
  if (name === undefined) {
    throw new InvalidArgumentError(
      `--profile must be one of ${toMockProfileNames().join(", ")} (got ${value})`,
    );
  }
  return name;
}

/** `token=tenant`, split at the last `=`: base64 tokens end in `=` padding, tenant names do not. */
export function parseTokenPair(pair: string): [string, string] {
  const at = pair.lastIndexOf("=");
  const token = pair.slice(0, Math.max(at, 0));
  const tenant = pair.slice(at + 1);
  if (at < 0 || !token || !tenant)
    throw new InvalidArgumentError(`--token expects token=tenant (got ${pair})`);
  return [token, tenant];
}

/** A push target as requests name it: `host:port` or `[v6]:port`, the port in 1..65535. */
export function assertHostPort(target: string): void {
  const match = /^(?:\[[^\]\s]+\]|[^:\s[\]]+):(\d{1,5})$/.exec(target);
  const port = Number(match?.[1]);
  if (!(port >= 1 && port <= 65_535))
    throw new InvalidArgumentError(`--push-target expects host:port (got ${target})`);
}
