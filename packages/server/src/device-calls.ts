import { type CallRegistry, Code, createCallRegistry, OpalError, Reason } from "@opal/core";

/** A device server's calls in progress, and whether it is shutting down. */
export interface DeviceCalls {
  /**
   * Open watches (streams that never end by themselves, such as WatchTelemetry): aborted with
   * UNAVAILABLE SHUTTING_DOWN as soon as shutdown begins (TM-4), so they do not hold the drain of
   * the calls that do end.
   */
  readonly watches: CallRegistry;
  /** Every other open call: aborted with UNAVAILABLE SHUTTING_DOWN on forced shutdown. */
  readonly others: CallRegistry;
  /** True once shutdown began: new calls fail with UNAVAILABLE SHUTTING_DOWN. */
  shuttingDown: boolean;
}

/** Creates the bookkeeping of a server that is not shutting down and has no calls. */
export function createDeviceCalls(): DeviceCalls {
  return { watches: createCallRegistry(), others: createCallRegistry(), shuttingDown: false };
}

/** UNAVAILABLE SHUTTING_DOWN with a retry delay: how a server that is shutting down ends calls. */
export function shuttingDownError(): OpalError {
  return new OpalError(Code.UNAVAILABLE, "device server is shutting down", {
    reason: Reason.SHUTTING_DOWN,
    retryDelayMs: 1000,
  });
}
