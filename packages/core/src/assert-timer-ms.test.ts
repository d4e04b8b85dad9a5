import { describe, expect, it } from "vitest";
import { assertTimerMs } from "./assert-timer-ms";
import { MAX_TIMER_MS } from "./call-options";
import { Code } from "./code";

describe("assertTimerMs", () => {
  it("passes undefined and integers from min to MAX_TIMER_MS", () => {
    for (const value of [undefined, 1, MAX_TIMER_MS])
      expect(() => assertTimerMs("t", value, 1)).not.toThrow();
  });

  it("refuses what setTimeout would not hold, naming the field and the range", () => {
    for (const value of [0, 1.5, MAX_TIMER_MS + 1, Number.NaN]) {
      expect(() => assertTimerMs("limits.t", value, 1)).toThrow(
        expect.objectContaining({
          code: Code.INVALID_ARGUMENT,
          message: `[invalid_argument] limits.t: expected an integer from 1 to ${MAX_TIMER_MS}, got ${value}`,
        }),
      );
    }
  });
});
