import { Code, OpalError } from "@opal/core";

/**
 * The closed set of reasons a {@link KvFormatError} carries. Every decoder, validator and converter
 * of `@opal/kv` fails with one of these and nothing else.
 */
export const KV_FORMAT_REASONS = [
  "BAD_MAGIC",
  "UNSUPPORTED_VERSION",
  "TRUNCATED",
  "TRAILING_DATA",
  "LENGTH_LIMIT",
  "CHECKSUM_MISMATCH",
  "DIGEST_MISMATCH",
  "INVALID_HEADER",
  "INVALID_DESCRIPTOR",
  "INVALID_FRAME",
  "OUT_OF_ORDER",
  "INVALID_OFFSETS",
  "SHAPE_MISMATCH",
  "UNSUPPORTED_DTYPE",
  "UNSUPPORTED_LAYOUT",
  "OUT_OF_RANGE",
] as const;

/** One of {@link KV_FORMAT_REASONS}. */
export type KvFormatReason = (typeof KV_FORMAT_REASONS)[number];

declare module "@opal/core" {
  /** `OpalError.reason` of a {@link KvFormatError} is one of {@link KV_FORMAT_REASONS}. */
  interface LocalReasons extends Record<KvFormatReason, true> {}
}

const dataLossReasons: ReadonlySet<KvFormatReason> = new Set([
  "TRUNCATED",
  "CHECKSUM_MISMATCH",
  "DIGEST_MISMATCH",
]);

/** Options of the {@link KvFormatError} constructor. */
export interface KvFormatErrorOptions {
  /** Field or location the error is about, e.g. `descriptor.headRange.count`; default none. */
  readonly field?: string;
  /** Underlying error, for debugging. */
  readonly cause?: unknown;
}

/**
 * The error of every `@opal/kv` check: bad input bytes, invalid descriptors or arguments. `code` is
 * DATA_LOSS for a checksum or digest mismatch and a truncated stream, INVALID_ARGUMENT otherwise;
 * `reason` is one of {@link KV_FORMAT_REASONS}. The message says expected vs actual.
 */
export class KvFormatError extends OpalError {
  declare readonly reason: KvFormatReason;

  constructor(reason: KvFormatReason, message: string, options: KvFormatErrorOptions = {}) {
    const code = dataLossReasons.has(reason) ? Code.DATA_LOSS : Code.INVALID_ARGUMENT;
    super(code, message, {
      reason,
      cause: options.cause,
      fieldViolations:
        options.field !== undefined && code === Code.INVALID_ARGUMENT
          ? [{ field: options.field, description: message }]
          : undefined,
    });
  }
}

/** True when `error` is a {@link KvFormatError}, optionally with the given reason. */
export function isKvFormatError(error: unknown, reason?: KvFormatReason): error is KvFormatError {
  return error instanceof KvFormatError && (reason === undefined || error.reason === reason);
}
