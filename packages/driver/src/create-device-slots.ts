import { Code, OpalError, Reason, toAbortError } from "@opal/core";

/** Concurrency slots with a bounded wait queue. */
export interface DeviceSlots {
  /**
   * Waits for a slot; resolves with the time waited (µs) and a release function to call exactly
   * once. Throws RESOURCE_EXHAUSTED DEVICE_BUSY (with RetryInfo) when all slots and queue places are
   * taken, or the abort error when `signal` aborts while queued (the place is freed).
   */
  acquire(
    signal: AbortSignal | undefined,
  ): Promise<{ readonly queueTimeUs: number; release(): void }>;
  readonly active: number;
  readonly queued: number;
}

/** Creates `maxActive` slots with up to `maxQueued` waiters. */
export function createDeviceSlots(
  maxActive: number,
  maxQueued: number,
  retryDelayMs = 50,
): DeviceSlots {
  let active = 0;
  const waiters: Array<() => void> = [];
  const grant = () => {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = waiters.shift();
      if (next) next();
      else active--;
    };
  };
  return {
    get active() {
      return active;
    },
    get queued() {
      return waiters.length;
    },
    async acquire(signal) {
      if (signal?.aborted) throw toAbortError(signal.reason);
      const started = performance.now();
      if (active < maxActive) {
        active++;
        return { queueTimeUs: 0, release: grant() };
      }
      if (waiters.length >= maxQueued) {
        throw new OpalError(
          Code.RESOURCE_EXHAUSTED,
          `all ${maxActive} prefill slots and ${maxQueued} queue places are busy`,
          { reason: Reason.DEVICE_BUSY, retryDelayMs },
        );
      }
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          const index = waiters.indexOf(wake);
          if (index >= 0) waiters.splice(index, 1);
          reject(toAbortError(signal?.reason));
        };
        const wake = () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        };
        waiters.push(wake);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
      return { queueTimeUs: Math.round((performance.now() - started) * 1000), release: grant() };
    },
  };
}
