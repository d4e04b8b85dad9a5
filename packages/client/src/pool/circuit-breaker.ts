import { Code, type OpalError } from "@opal/core";
import type { PoolDevice } from "./device-pool-options";

/** "closed": in service; "open": taken out after failures; "half-open": on probation. */
export type CircuitState = PoolDevice["circuit"];

/** A device's circuit breaker: plain state, changed only by the functions of this file. */
export interface Breaker {
  circuit: CircuitState;
  /** When the circuit last opened (or a probe of it last failed), ms since the Unix epoch. */
  openedAt: number;
  /** Device failures since the last success. */
  failures: number;
}

/** How a pool's breakers trip and recover (see `DevicePoolOptions`). */
export interface BreakerSettings {
  /** Consecutive device failures that open the circuit, >= 1. */
  readonly failureThreshold: number;
  /** How long an open circuit stays open before it may go half-open, in ms. */
  readonly openMs: number;
}

const DEVICE_FAILURES = new Set<number>([
  Code.UNAVAILABLE,
  Code.INTERNAL,
  Code.DATA_LOSS,
  Code.UNKNOWN,
]);

/** A closed breaker with no failures. */
export function createBreaker(): Breaker {
  return { circuit: "closed", openedAt: 0, failures: 0 };
}

/** True for the codes that count as the device's own failure: UNAVAILABLE, INTERNAL, DATA_LOSS, UNKNOWN. */
export function isDeviceFailureCode(error: OpalError): boolean {
  return DEVICE_FAILURES.has(error.code);
}

/** True when `breaker` is open and `openMs` has passed since it opened, at `nowMs`. */
export function isOpenPast(breaker: Breaker, openMs: number, nowMs: number): boolean {
  return breaker.circuit === "open" && nowMs - breaker.openedAt >= openMs;
}

/** Open → half-open once `openMs` has passed at `nowMs`: the next prefill is a trial. */
export function admitTrial(breaker: Breaker, openMs: number, nowMs: number): void {
  if (isOpenPast(breaker, openMs, nowMs)) breaker.circuit = "half-open";
}

/** A completed prefill or a ready probe: the circuit closes and the failures are forgotten. */
export function closeCircuit(breaker: Breaker): void {
  breaker.failures = 0;
  breaker.circuit = "closed";
}

/**
 * A device failure at `nowMs`: counted; the circuit opens on a failed trial (half-open) or once
 * `failureThreshold` failures are counted.
 */
export function recordFailure(breaker: Breaker, settings: BreakerSettings, nowMs: number): void {
  breaker.failures++;
  if (breaker.circuit === "half-open" || breaker.failures >= settings.failureThreshold) {
    breaker.circuit = "open";
    breaker.openedAt = nowMs;
  }
}

/** A probe of an open circuit that failed at `nowMs`: it stays open another `openMs`. */
export function recordFailedProbe(breaker: Breaker, nowMs: number): void {
  breaker.openedAt = nowMs;
}
