/**
 * Status codes, numerically identical to gRPC's canonical codes so that an error crosses the wire
 * without translation.
 */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** One of the values of {@link Code}. */
export type Code = (typeof Code)[keyof typeof Code];

const names = new Map<number, string>(Object.entries(Code).map(([name, value]) => [value, name]));

/** Lower-case name of a code (`invalid_argument`), or `code_<n>` for a number outside the set. */
export function codeName(code: number): string {
  return names.get(code)?.toLowerCase() ?? `code_${code}`;
}

/** True when `value` is one of the 17 canonical codes. */
export function isCode(value: unknown): value is Code {
  return typeof value === "number" && names.has(value);
}
