import { invalidOption } from "./invalid-option";

/** The largest HTTP/2 window and gRPC message limit grpc-js takes, in bytes (int32). */
export const MAX_INT32 = 2 ** 31 - 1;

/**
 * Checks option `field`: an integer from `min` to `max` (default the largest safe integer), or
 * INVALID_ARGUMENT INVALID_FIELD naming the field, what it expects and what it got.
 */
export function assertIntegerOption(
  field: string,
  value: unknown,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): void {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw invalidOption(field, `an integer ${range}`, value);
  }
}

/** Checks option `field`: one of `allowed`, or INVALID_ARGUMENT INVALID_FIELD naming it. */
export function assertOneOfOption(field: string, value: unknown, allowed: readonly string[]): void {
  if (typeof value !== "string" || !allowed.includes(value)) {
    throw invalidOption(field, allowed.map((a) => JSON.stringify(a)).join(" or "), value);
  }
}
