import { OpalError } from "@opal/core";
import type { KvPosition } from "@opal/driver";
import type { PrefillRunState } from "./prefill-run-state";
import { recordAttemptFailure } from "./prefill-span";
import {
  readKvStream,
  type StreamHooks,
  type StreamOutcome,
  type StreamProgress,
} from "./read-kv-stream";
import { isRetryable } from "./retry-policy";

/** A stream that ended with a verified, complete cache. */
export type CompletedStream = Extract<StreamOutcome, { readonly kind: "completed" }>;

/** One attempt's stream: what it verified so far and where its layers go. */
export interface AttemptStream {
  /** The attempt's number, from 1. */
  readonly attempt: number;
  readonly progress: StreamProgress;
  readonly hooks: StreamHooks;
  /** The sink keeps the layers, so the device client may keep the chunks they are made of. */
  readonly keepsChunks: boolean;
}

/**
 * Reads an attempt's prefill stream into its `progress`; a break is resumed with FetchKv
 * from the last verified position while {@link resumePointOf} allows it and the break is
 * retryable, at most `maxAttempts` resumes over the run. Resolves with the completed stream;
 * otherwise throws the break (a resume the device can no longer serve throws the first break,
 * its message naming why resuming failed).
 */
export async function readWithResume(
  run: PrefillRunState<unknown>,
  stream: AttemptStream,
): Promise<CompletedStream> {
  const { attempt, progress, hooks } = stream;
  const call = { signal: run.signal, keepsChunks: stream.keepsChunks };
  let outcome = await readKvStream(run.device.prefill(run.request, call), progress, hooks);
  while (outcome.kind === "broken") {
    // Resume only what is missing; a complete cache that failed its final check is retried whole.
    const from = resumePointOf(run, progress);
    if (!from || !isRetryable(outcome.error)) throw outcome.error;
    run.resumes++;
    recordAttemptFailure(run.span, attempt, outcome.error, "resume");
    const broken = outcome.error;
    const { maxChunkBytes } = run.request;
    outcome = await readKvStream(
      run.device.fetchKv(
        {
          kvHandle: from.kvHandle,
          resumeFrom: from.position,
          ...(maxChunkBytes ? { maxChunkBytes } : {}),
        },
        call,
      ),
      progress,
      { onAccepted: async () => {}, onLayer: hooks.onLayer },
    );
    // The device no longer holds the cache (its lease ended, it restarted, it refused): resuming
    // cannot work, so the attempt fails as the stream did and is retried whole.
    if (outcome.kind === "broken" && !isRetryable(outcome.error))
      throw resumeFailed(broken, outcome.error);
    if (outcome.kind === "broken" && run.resumes >= run.maxAttempts) throw outcome.error;
  }
  return outcome;
}

/**
 * Where a broken stream can resume: its retained cache and the first byte not yet verified, when
 * resuming is on, the request retains its cache, and the cache is not yet complete; else undefined.
 */
export function resumePointOf(
  run: PrefillRunState<unknown>,
  progress: StreamProgress,
): { readonly kvHandle: string; readonly position: KvPosition } | undefined {
  const { kvHandle, assembler, position } = progress;
  if (!run.resume || (run.request.retentionSeconds ?? 0) <= 0) return undefined;
  if (!kvHandle || !assembler || assembler.complete || !position) return undefined;
  return { kvHandle, position };
}

/** The first break `broken`, its message naming why resuming after it failed (`resuming`). */
function resumeFailed(broken: OpalError, resuming: OpalError): OpalError {
  return new OpalError(broken.code, `${broken.rawMessage}; resuming failed: ${resuming.message}`, {
    reason: broken.reason,
    cause: resuming,
    ...(broken.retryDelayMs !== undefined ? { retryDelayMs: broken.retryDelayMs } : {}),
  });
}
