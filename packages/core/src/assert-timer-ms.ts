import { MAX_TIMER_MS } from "./call-options";
import { invalidField } from "./invalid-field";

/**
 * Throws INVALID_ARGUMENT INVALID_FIELD naming `field` unless `value` is undefined or an integer
 * from `min` to `MAX_TIMER_MS` (2^31 - 1): a longer delay makes `setTimeout` fire after 1 ms.
 */
export function assertTimerMs(field: string, value: number | undefined, min: number): void {
  if (value !== undefined && !(Number.isInteger(value) && value >= min && value <= MAX_TIMER_MS)) {
    throw invalidField(field, `expected an integer from ${min} to ${MAX_TIMER_MS}, got ${value}`);
  }
}
