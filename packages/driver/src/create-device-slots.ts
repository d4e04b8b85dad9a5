import { Code, OpalError, Reason, toAbortError } from "@opal/core";

/** Concurrency slots with a bounded wait queue, admitted by priority (`PF-50`). */
export interface DeviceSlots {
  /**
   * Waits for a slot; resolves with the time waited (µs) and a release function to call exactly
   * once. A freed slot goes to the waiter with the lowest `priority` (a request's `priority`,
   * default 0), equal priorities in arrival order. Throws RESOURCE_EXHAUSTED DEVICE_BUSY (with
   * RetryInfo) when all slots and queue places are taken, whatever the priority, or the abort
   * error when `signal` aborts while queued (the place is freed).
   */
  acquire(
    signal: AbortSignal | undefined,
    priority?: number,
  ): Promise<{ readonly queueTimeUs: number; release(): void }>;
  readonly active: number;
  readonly queued: number;
}

/** A queued acquire: woken when a slot is handed to it. */
interface Waiter {
  readonly priority: number;
  readonly wake: () => void;
}

/** Creates `maxActive` slots with up to `maxQueued` waiters. */
export function createDeviceSlots(
  maxActive: number,
  maxQueued: number,
  retryDelayMs = 50,
): DeviceSlots {
  let active = 0;
  const waiters: Waiter[] = [];
  const grant = () => {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = waiters.shift();
      if (next) next.wake();
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
    async acquire(signal, priority = 0) {
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
          const index = waiters.indexOf(waiter);
          if (index >= 0) waiters.splice(index, 1);
          reject(toAbortError(signal?.reason));
        };
        const waiter: Waiter = {
          priority,
          wake: () => {
            signal?.removeEventListener("abort", onAbort);
            resolve();
          },
        };
        insertByPriority(waiters, waiter);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
      return { queueTimeUs: Math.round((performance.now() - started) * 1000), release: grant() };
    },
  };
}

/** Puts `waiter` after every waiter of the same or a lower priority (arrival order among equals). */
function insertByPriority(waiters: Waiter[], waiter: Waiter): void {
  const after = waiters.findIndex((w) => w.priority > waiter.priority);
  if (after < 0) waiters.push(waiter);
  else waiters.splice(after, 0, waiter);
}
