import type { CallOptions, CallSignal } from "./call-options";
import { createCallSignal } from "./call-options";
import type { OpalError } from "./opal-error";

/**
 * The calls an owner (a client, a device, a server) has in progress, so that closing the owner ends
 * every one of them.
 */
export interface CallRegistry {
  /**
   * Opens a call. Its signal aborts when `options.signal` aborts (with that reason), after
   * `options.timeoutMs` (DEADLINE_EXCEEDED), or on {@link CallRegistry.abortAll}. Throws
   * INVALID_ARGUMENT for a bad `timeoutMs` before anything is registered. The caller must call
   * `dispose()` when the call ends, whatever the outcome.
   */
  open(options?: CallOptions): CallSignal;
  /** Aborts every call open now with `reason`; calls opened later are not affected. */
  abortAll(reason: OpalError): void;
  /** How many calls are open. */
  readonly size: number;
}

/** Creates an empty {@link CallRegistry}. */
export function createCallRegistry(): CallRegistry {
  const open = new Set<AbortController>();
  return {
    open(options = {}) {
      const own = new AbortController();
      // First, as it throws for a bad timeout: nothing is registered yet.
      const scope = createCallSignal({
        signal: own.signal,
        ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      });
      const caller = options.signal;
      const forward = () => own.abort(caller?.reason);
      if (caller?.aborted) forward();
      else caller?.addEventListener("abort", forward, { once: true });
      open.add(own);
      return {
        signal: scope.signal,
        dispose() {
          open.delete(own);
          caller?.removeEventListener("abort", forward);
          scope.dispose();
        },
      };
    },
    abortAll(reason) {
      for (const call of [...open]) call.abort(reason);
    },
    get size() {
      return open.size;
    },
  };
}
