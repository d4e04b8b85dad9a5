import { Code, OpalError, Reason } from "@opal/core";
import { describe, expect, it } from "vitest";
import { backoffMs, isRetryable } from "./retry-policy";

const error = (
  code: Code = Code.UNAVAILABLE,
  options: { retryDelayMs?: number; reason?: Reason } = {},
) => new OpalError(code, "test failure", options);

const sequence = (
  policy: Parameters<typeof backoffMs>[0],
  attempts: number,
  random: () => number,
  failure = error(),
) => Array.from({ length: attempts }, (_, i) => backoffMs(policy, i + 1, failure, random));

describe("backoffMs", () => {
  it("doubles from 50 ms and caps at 2,000 ms by default (random = 1: the full exponential)", () => {
    expect(sequence({}, 7, () => 1)).toEqual([50, 100, 200, 400, 800, 1600, 2000]);
    // Far past the cap it stays at the cap.
    expect(backoffMs({}, 30, error(), () => 1)).toBe(2000);
  });

  it("honours a custom initial backoff and cap", () => {
    expect(sequence({ initialBackoffMs: 10, maxBackoffMs: 70 }, 6, () => 1)).toEqual([
      10, 20, 40, 70, 70, 70,
    ]);
    expect(sequence({ initialBackoffMs: 1000, maxBackoffMs: 5000 }, 5, () => 1)).toEqual([
      1000, 2000, 4000, 5000, 5000,
    ]);
    // Only the initial backoff given: the default cap still applies.
    expect(sequence({ initialBackoffMs: 300 }, 4, () => 1)).toEqual([300, 600, 1200, 2000]);
    // Only the cap given: the default initial backoff still applies.
    expect(sequence({ maxBackoffMs: 150 }, 4, () => 1)).toEqual([50, 100, 150, 150]);
  });

  it("uses full jitter: the delay is random() times the exponential backoff", () => {
    expect(sequence({}, 7, () => 0.5)).toEqual([25, 50, 100, 200, 400, 800, 1000]);
    expect(sequence({}, 4, () => 0.25)).toEqual([13, 25, 50, 100]);
    expect(sequence({}, 7, () => 0)).toEqual([0, 0, 0, 0, 0, 0, 0]);
  });

  it("never goes below the device's RetryInfo delay (a floor, not a replacement)", () => {
    const busy = error(Code.RESOURCE_EXHAUSTED, { retryDelayMs: 300 });
    expect(backoffMs({}, 1, busy, () => 0)).toBe(300);
    expect(sequence({}, 4, () => 0, busy)).toEqual([300, 300, 300, 300]);
    // Above the floor the jittered backoff wins.
    expect(backoffMs({}, 5, busy, () => 1)).toBe(800);
    expect(backoffMs({}, 4, busy, () => 0.5)).toBe(300);
    expect(backoffMs({}, 5, busy, () => 0.5)).toBe(400);
    // The device's delay is honoured even beyond the client's cap.
    expect(backoffMs({}, 10, error(Code.UNAVAILABLE, { retryDelayMs: 5000 }), () => 1)).toBe(5000);
  });

  it("uses Math.random by default, within [0, backoff]", () => {
    for (let i = 0; i < 50; i++) {
      const delay = backoffMs({}, 3, error());
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThanOrEqual(200);
      expect(Number.isInteger(delay)).toBe(true);
    }
  });
});

describe("isRetryable", () => {
  it.each([
    ["UNAVAILABLE", Code.UNAVAILABLE],
    ["RESOURCE_EXHAUSTED", Code.RESOURCE_EXHAUSTED],
    ["ABORTED", Code.ABORTED],
    ["DATA_LOSS", Code.DATA_LOSS],
  ])("retries %s", (_name, code) => {
    expect(isRetryable(error(code))).toBe(true);
    expect(isRetryable(error(code, { reason: Reason.DEVICE_FAULT }))).toBe(true);
  });

  it.each([
    ["CANCELLED", Code.CANCELLED],
    ["DEADLINE_EXCEEDED", Code.DEADLINE_EXCEEDED],
    ["INVALID_ARGUMENT", Code.INVALID_ARGUMENT],
    ["NOT_FOUND", Code.NOT_FOUND],
    ["FAILED_PRECONDITION", Code.FAILED_PRECONDITION],
    ["PERMISSION_DENIED", Code.PERMISSION_DENIED],
    ["UNAUTHENTICATED", Code.UNAUTHENTICATED],
    ["UNIMPLEMENTED", Code.UNIMPLEMENTED],
    ["INTERNAL", Code.INTERNAL],
    ["UNKNOWN", Code.UNKNOWN],
  ])("does not retry %s", (_name, code) => {
    expect(isRetryable(error(code))).toBe(false);
  });

  it("retries exactly UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED and DATA_LOSS of all codes", () => {
    const retryable = Object.entries(Code)
      .filter(([, code]) => isRetryable(error(code)))
      .map(([name]) => name)
      .sort();
    expect(retryable).toEqual(["ABORTED", "DATA_LOSS", "RESOURCE_EXHAUSTED", "UNAVAILABLE"]);
  });

  it.each([Reason.MESSAGE_TOO_LARGE, Reason.RETENTION_LIMIT_EXCEEDED])(
    "does not retry RESOURCE_EXHAUSTED %s (another attempt cannot fit)",
    (reason) => {
      expect(isRetryable(error(Code.RESOURCE_EXHAUSTED, { reason }))).toBe(false);
      // Busy devices and rate limits stay retryable.
      expect(isRetryable(error(Code.RESOURCE_EXHAUSTED, { reason: Reason.DEVICE_BUSY }))).toBe(
        true,
      );
    },
  );
});
