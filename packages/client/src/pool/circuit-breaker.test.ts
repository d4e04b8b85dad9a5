import { Code, OpalError } from "@opal/core";
import { describe, expect, it } from "vitest";
import {
  admitTrial,
  type Breaker,
  closeCircuit,
  createBreaker,
  isDeviceFailureCode,
  isOpenPast,
  recordFailedProbe,
  recordFailure,
} from "./circuit-breaker";

const settings = { failureThreshold: 3, openMs: 100 };
const openedAt1000 = (): Breaker => ({ circuit: "open", openedAt: 1_000, failures: 3 });

describe("circuit breaker", () => {
  it("opens after failureThreshold device failures in a row, at the time of the last", () => {
    const breaker = createBreaker();
    recordFailure(breaker, settings, 10);
    recordFailure(breaker, settings, 20);
    expect(breaker).toEqual({ circuit: "closed", openedAt: 0, failures: 2 });
    recordFailure(breaker, settings, 30);
    expect(breaker).toEqual({ circuit: "open", openedAt: 30, failures: 3 });
  });

  it("forgets the failures on a success", () => {
    const breaker = createBreaker();
    recordFailure(breaker, settings, 10);
    recordFailure(breaker, settings, 20);
    closeCircuit(breaker);
    recordFailure(breaker, settings, 30);
    expect(breaker).toEqual({ circuit: "closed", openedAt: 0, failures: 1 });
  });

  it("goes half-open only once openMs has passed", () => {
    const open = openedAt1000();
    admitTrial(open, settings.openMs, 1_099);
    expect(open.circuit).toBe("open");
    expect(isOpenPast(open, settings.openMs, 1_099)).toBe(false);
    expect(isOpenPast(open, settings.openMs, 1_100)).toBe(true);
    admitTrial(open, settings.openMs, 1_100);
    expect(open.circuit).toBe("half-open");
    expect(isOpenPast(open, settings.openMs, 5_000)).toBe(false);
  });

  it("reopens on a failed trial, whatever the count", () => {
    const breaker = createBreaker();
    breaker.circuit = "half-open";
    recordFailure(breaker, settings, 500);
    expect(breaker).toEqual({ circuit: "open", openedAt: 500, failures: 1 });
  });

  it("closes on a successful trial", () => {
    const trial: Breaker = { circuit: "half-open", openedAt: 1_000, failures: 3 };
    closeCircuit(trial);
    expect(trial).toMatchObject({ circuit: "closed", failures: 0 });
  });

  it("stays open another openMs after a failed probe", () => {
    const probed = openedAt1000();
    recordFailedProbe(probed, 1_200);
    expect(isOpenPast(probed, settings.openMs, 1_250)).toBe(false);
    expect(isOpenPast(probed, settings.openMs, 1_300)).toBe(true);
    expect(probed.circuit).toBe("open");
  });

  it("counts UNAVAILABLE, INTERNAL, DATA_LOSS and UNKNOWN as the device's failures", () => {
    const failing = [Code.UNAVAILABLE, Code.INTERNAL, Code.DATA_LOSS, Code.UNKNOWN];
    for (const code of failing) expect(isDeviceFailureCode(new OpalError(code, "x"))).toBe(true);
    for (const code of [Code.INVALID_ARGUMENT, Code.CANCELLED, Code.RESOURCE_EXHAUSTED])
      expect(isDeviceFailureCode(new OpalError(code, "x"))).toBe(false);
  });
});
