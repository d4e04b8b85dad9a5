import { Code } from "./code";
import { OpalError } from "./opal-error";
import { Reason } from "./reason";

/**
 * The longest delay a Node timer holds, in ms (2^31 - 1, about 24.8 days); a longer one fires after
 * 1 ms. Every timeout and interval option is capped or checked against it.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Options accepted by every OPAL call that may block or stream. */
export interface CallOptions {
  /** Aborts the call; the call rejects with CANCELLED (or the reason given, if an `OpalError`). */
  readonly signal?: AbortSignal;
  /**
   * Deadline relative to the start of the call, in milliseconds; DEADLINE_EXCEEDED after it. A
   * finite number >= 0; deadlines beyond about 24.8 days (2^31 - 1 ms) are held to that.
   */
  readonly timeoutMs?: number;
}

/** A signal combining a caller's signal and a timeout, with a way to release its timer. */
export interface CallSignal {
  readonly signal: AbortSignal;
  /** Clears the timer; call it when the call ends, whatever the outcome. */
  dispose(): void;
}

/**
 * Combines `options.signal` and `options.timeoutMs` into one signal. The abort reason is an
 * `OpalError`: CANCELLED for the caller's signal (unless its reason is already an `OpalError`) and
 * DEADLINE_EXCEEDED for the timeout.
 */
export function createCallSignal(options: CallOptions = {}): CallSignal {
  const { signal, timeoutMs } = options;
  if (
    timeoutMs !== undefined &&
    (typeof timeoutMs !== "number" || !(timeoutMs >= 0) || timeoutMs === Infinity)
  ) {
    const description = `expected a finite number >= 0, got ${String(timeoutMs)}`;
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `timeoutMs must be a finite number >= 0 (got ${String(timeoutMs)})`,
      {
        reason: Reason.INVALID_FIELD,
        fieldViolations: [{ field: "timeoutMs", description }],
      },
    );
  }
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const onAbort = () => controller.abort(toAbortError(signal?.reason));
  if (signal?.aborted) onAbort();
  else signal?.addEventListener("abort", onAbort, { once: true });
  if (timeoutMs !== undefined && !controller.signal.aborted) {
    timer = setTimeout(
      () => {
        controller.abort(
          new OpalError(Code.DEADLINE_EXCEEDED, `deadline of ${timeoutMs} ms exceeded`),
        );
      },
      Math.min(timeoutMs, MAX_TIMER_MS),
    );
    timer.unref?.();
  }
  return {
    signal: controller.signal,
    dispose() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    },
  };
}

/** The `OpalError` an aborted signal stands for (CANCELLED unless the reason says otherwise). */
export function toAbortError(reason: unknown): OpalError {
  if (reason instanceof OpalError) return reason;
  if (reason instanceof Error && reason.name === "TimeoutError") {
    return new OpalError(Code.DEADLINE_EXCEEDED, reason.message, { cause: reason });
  }
  const detail = reason instanceof Error ? reason.message : "operation cancelled";
  return new OpalError(Code.CANCELLED, detail, { cause: reason });
}

/** Throws the signal's {@link toAbortError} when it is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw toAbortError(signal.reason);
}

/**
 * Resolves after `delayMs`, or rejects with {@link toAbortError} as soon as `signal` aborts. The
 * timer keeps the process alive (a pending retry or a simulated delay is real work).
 */
export function sleep(delayMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(toAbortError(signal.reason));
    const onAbort = () => {
      clearTimeout(timer);
      reject(toAbortError(signal?.reason));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, delayMs);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
