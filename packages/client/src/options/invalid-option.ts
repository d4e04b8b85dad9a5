import { invalidField, type OpalError } from "@opal/core";

/**
 * INVALID_ARGUMENT INVALID_FIELD for a bad option (of a client, a pool, a sink or the receiver),
 * naming `field`, what it expects and what it got: `expected an integer >= 1, got 0`.
 */
export function invalidOption(field: string, expected: string, actual: unknown): OpalError {
  return invalidField(field, `expected ${expected}, got ${describeValue(actual)}`);
}

/** A short description of an option's value for error messages. */
export function describeValue(value: unknown): string {
  if (value instanceof Uint8Array) return `${value.byteLength} bytes`;
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === "object" && value !== null) return "an object";
  return String(value);
}
