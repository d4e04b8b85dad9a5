import { Code, OpalError, Reason, toAbortError } from "@opal/core";

/**
 * Waits for `stream` to drain its write buffer, at most `stallTimeoutMs`. A caller that stops
 * reading (its HTTP/2 window stays full) would otherwise hold the call, its device slot and its
 * tenant's slot for as long as the connection lives: past the timeout this rejects with
 * `stalled()`, by default DEADLINE_EXCEEDED `DEADLINE_EXCEEDED` ("stalled: …"), and the call ends.
 * Rejects with the signal's abort error when `signal` aborts first, and with the stream's error if
 * it fails.
 */
export function waitForDrain(
  stream: NodeJS.EventEmitter,
  signal: AbortSignal,
  stallTimeoutMs: number,
  stalled: () => OpalError = () =>
    new OpalError(
      Code.DEADLINE_EXCEEDED,
      `stalled: the caller read nothing for ${stallTimeoutMs} ms (streamStallTimeoutMs)`,
      { reason: Reason.DEADLINE_EXCEEDED },
    ),
): Promise<void> {
  if (signal.aborted) return Promise.reject(toAbortError(signal.reason));
  return new Promise((resolve, reject) => {
    const settle = (error?: unknown) => {
      clearTimeout(timer);
      stream.off("drain", onDrain);
      stream.off("error", settle);
      signal.removeEventListener("abort", onAbort);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onDrain = () => settle();
    const onAbort = () => settle(toAbortError(signal.reason));
    const timer = setTimeout(() => settle(stalled()), stallTimeoutMs);
    timer.unref();
    stream.on("drain", onDrain);
    stream.on("error", settle);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
