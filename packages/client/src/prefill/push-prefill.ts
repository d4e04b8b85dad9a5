import { type CallOptions, Code, createCallSignal, OpalError, Reason, sleep } from "@opal/core";
import type { PrefillDriver, PrefillRequest, PrefillStats } from "@opal/driver";
import type { KvDescriptor } from "@opal/kv";
import { checkAcceptedDescriptor, retriesElsewhere } from "./check-accepted-descriptor";
import {
  endPrefillSpan,
  failPrefillSpan,
  recordAttemptFailure,
  startPrefillSpan,
} from "./prefill-span";
import { assertRetryPolicy, backoffMs, isRetryable, type RetryPolicy } from "./retry-policy";

/** What a push-mode prefill reports once the receiver committed the cache. */
export interface PushOutcome {
  readonly descriptor: KvDescriptor;
  readonly stats: PrefillStats;
  /** The receiver's acknowledgement: committed, and its id of the cache. */
  readonly receipt: { readonly committed: boolean; readonly cacheId: string };
  /** Layers the device reported pushed, in order of arrival. */
  readonly layersPushed: number;
  readonly attempts: number;
}

/**
 * Runs a prefill whose `pushTarget` names a KvReceiver: the device streams the cache straight to
 * the decoder, and this call follows its progress. Resolves only when the device reports that the
 * receiver committed the cache; retries like `startPrefill` (same `request_id`, so the receiver
 * deduplicates by `transfer_id`). An `accepted` descriptor that contradicts the request (PF-12)
 * cancels the call and rejects FAILED_PRECONDITION DESCRIPTOR_MISMATCH naming the field, without
 * asking that device again (a pool retries elsewhere). `onProgress` sees each `push_progress`.
 * Rejects with INVALID_ARGUMENT for a missing `pushTarget` or a bad `timeoutMs` or `retry` field,
 * naming it.
 */
export async function pushPrefill(
  device: PrefillDriver,
  request: PrefillRequest,
  options: CallOptions & {
    readonly retry?: RetryPolicy;
    readonly onProgress?: (layersPushed: number, bytesPushed: number) => void;
  } = {},
): Promise<PushOutcome> {
  if (!request.pushTarget) {
    throw new OpalError(Code.INVALID_ARGUMENT, "pushPrefill needs request.pushTarget", {
      reason: Reason.INVALID_FIELD,
      fieldViolations: [{ field: "push_target", description: "required for push mode" }],
    });
  }
  assertRetryPolicy(options.retry);
  const call = createCallSignal(options);
  const maxAttempts = options.retry?.maxAttempts ?? 4;
  const span = startPrefillSpan(request, "push");
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        let descriptor: KvDescriptor | undefined;
        let layersPushed = 0;
        for await (const event of device.prefill(request, { signal: call.signal })) {
          if (event.type === "accepted") {
            // PF-12: a cache other than the one asked for ends the call before the push goes on.
            const refused = checkAcceptedDescriptor(request, event.descriptor);
            if (refused) throw refused;
            descriptor = event.descriptor;
          } else if (event.type === "push_progress") {
            layersPushed = event.layersPushed;
            options.onProgress?.(event.layersPushed, event.bytesPushed);
          } else if (event.type === "chunk") {
            throw new OpalError(
              Code.DATA_LOSS,
              "the device sent chunks inline instead of pushing them",
              {
                reason: Reason.STREAM_INCOMPLETE,
              },
            );
          } else if (event.type === "completed") {
            const receipt = event.stats.pushReceipt;
            if (!descriptor || !receipt?.committed) {
              throw new OpalError(
                Code.DATA_LOSS,
                "the push completed without a committed receipt",
                {
                  reason: Reason.STREAM_INCOMPLETE,
                },
              );
            }
            endPrefillSpan(span, event.stats, {
              kvBytes: event.stats.kvTotalBytes,
              attempts: attempt,
            });
            return { descriptor, stats: event.stats, receipt, layersPushed, attempts: attempt };
          }
        }
        throw new OpalError(Code.DATA_LOSS, "the device's stream ended without `completed`", {
          reason: Reason.STREAM_INCOMPLETE,
        });
      } catch (caught) {
        const error = call.signal.aborted
          ? OpalError.from(call.signal.reason)
          : OpalError.from(caught);
        const retryable = isRetryable(error) || retriesElsewhere(device, error);
        if (call.signal.aborted || !retryable || attempt >= maxAttempts) {
          failPrefillSpan(span, error);
          throw error;
        }
        recordAttemptFailure(span, attempt, error, "retry");
        try {
          await sleep(backoffMs(options.retry ?? {}, attempt, error), call.signal);
        } catch (stopped) {
          // The deadline or the caller ended the push during the backoff.
          const ended = OpalError.from(stopped);
          failPrefillSpan(span, ended);
          throw ended;
        }
      }
    }
  } finally {
    call.dispose();
  }
}
