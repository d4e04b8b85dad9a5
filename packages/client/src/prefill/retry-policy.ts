import { Code, MAX_TIMER_MS, type OpalError } from "@opal/core";
import { assertIntegerOption } from "../options/assert-option";

/** How failed attempts are retried. Every field documents its default. */
export interface RetryPolicy {
  /** Attempts in all, the first included: an integer >= 1; default 4. */
  readonly maxAttempts?: number;
  /** Backoff before the second attempt, in ms (an integer); doubles each time; default 50. */
  readonly initialBackoffMs?: number;
  /** Largest backoff, in ms (an integer); default 2,000. */
  readonly maxBackoffMs?: number;
}

/**
 * Checks a caller's `retry` option: `maxAttempts` an integer >= 1, the backoffs integers of ms from
 * 0 to 2,147,483,647. Throws INVALID_ARGUMENT INVALID_FIELD naming the field (`retry.maxAttempts`),
 * what it expects and what it got; `undefined` fields take their defaults.
 */
export function assertRetryPolicy(policy: RetryPolicy | undefined): void {
  if (policy === undefined) return;
  if (policy.maxAttempts !== undefined)
    assertIntegerOption("retry.maxAttempts", policy.maxAttempts, 1);
  for (const field of ["initialBackoffMs", "maxBackoffMs"] as const) {
    if (policy[field] !== undefined)
      assertIntegerOption(`retry.${field}`, policy[field], 0, MAX_TIMER_MS);
  }
}

const RETRYABLE = new Set<number>([
  Code.UNAVAILABLE,
  Code.RESOURCE_EXHAUSTED,
  Code.ABORTED,
  Code.DATA_LOSS,
]);

/**
 * True for failures another attempt may fix: UNAVAILABLE, RESOURCE_EXHAUSTED (busy, rate limits),
 * ABORTED and DATA_LOSS (a corrupted or broken stream). Never for the caller's own cancellation or
 * deadline, or for a request the device rejected as wrong.
 */
export function isRetryable(error: OpalError): boolean {
  return (
    RETRYABLE.has(error.code) &&
    error.reason !== "MESSAGE_TOO_LARGE" &&
    error.reason !== "RETENTION_LIMIT_EXCEEDED"
  );
}

/**
 * Delay before attempt `attempt + 1` (attempt counts from 1): exponential backoff with full jitter,
 * but never shorter than the device's RetryInfo delay.
 */
export function backoffMs(
  policy: RetryPolicy,
  attempt: number,
  error: OpalError,
  random: () => number = Math.random,
): number {
  const initial = policy.initialBackoffMs ?? 50;
  const cap = policy.maxBackoffMs ?? 2_000;
  const exponential = Math.min(cap, initial * 2 ** (attempt - 1));
  return Math.max(error.retryDelayMs ?? 0, Math.round(random() * exponential));
}
