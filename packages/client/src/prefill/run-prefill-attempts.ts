import { OpalError, sleep } from "@opal/core";
import { retriesElsewhere } from "./check-accepted-descriptor";
import type { PrefillOutcome } from "./prefill-run";
import type { PrefillRunState } from "./prefill-run-state";
import { failPrefillSpan, recordAttemptFailure } from "./prefill-span";
import { backoffMs, isRetryable } from "./retry-policy";
import { runPrefillAttempt } from "./run-prefill-attempt";
import { createSinkSerialiser, type SinkSerialiser } from "./sink-serialiser";

/**
 * The attempt loop of a run: each attempt gets a fresh sink; a failed attempt's sink is aborted
 * (see `SinkSerialiser.abandon`), then the attempt is retried with backoff (same `request_id`)
 * while the error is retryable, or the device broke the protocol and a retry goes to another
 * device (a pool), up to `maxAttempts`. Resolves with the first successful attempt's outcome;
 * rejects with the last error, or the signal's once it aborts, releasing the retained caches.
 */
export async function runPrefillAttempts<Receipt>(
  run: PrefillRunState<Receipt>,
): Promise<PrefillOutcome<Receipt>> {
  for (let attempt = 1; ; attempt++) {
    let sink: SinkSerialiser<Receipt> | undefined;
    try {
      sink = createSinkSerialiser(run.newSink(), run.signal);
      return await runPrefillAttempt(run, attempt, sink);
    } catch (caught) {
      const error = run.signal.aborted ? OpalError.from(run.signal.reason) : OpalError.from(caught);
      await sink?.abandon(error);
      await retryOrFail(run, attempt, error);
    }
  }
}

/**
 * After attempt number `attempt` failed with `error`: waits the backoff before the next attempt,
 * or ends the run (failing its span, releasing its retained caches) by throwing `error`, or the
 * signal's error when it aborts during the backoff.
 */
async function retryOrFail(
  run: PrefillRunState<unknown>,
  attempt: number,
  error: OpalError,
): Promise<void> {
  // A device that broke the protocol is not asked again; a pool's retry goes elsewhere.
  const retryable = isRetryable(error) || retriesElsewhere(run.device, error);
  if (run.signal.aborted || !retryable || attempt >= run.maxAttempts) throw failRun(run, error);
  recordAttemptFailure(run.span, attempt, error, "retry");
  try {
    await sleep(backoffMs(run.retry, attempt, error), run.signal);
  } catch (stopped) {
    // The deadline or the caller ended the run during the backoff.
    throw failRun(run, OpalError.from(stopped));
  }
}

/** Ends `run` with `error`: its span fails and the caches its attempts retained are released. */
function failRun(run: PrefillRunState<unknown>, error: OpalError): OpalError {
  failPrefillSpan(run.span, error);
  run.retained.releaseExcept();
  return error;
}
