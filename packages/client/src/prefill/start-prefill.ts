import { createCallSignal } from "@opal/core";
import type { PrefillDriver, PrefillRequest } from "@opal/driver";
import type { KvSink } from "../sinks/kv-sink";
import { createMemorySink } from "../sinks/memory-sink";
import { createLayerDelivery } from "./layer-delivery";
import type { PrefillOptions, PrefillRun } from "./prefill-run";
import type { PrefillRunState } from "./prefill-run-state";
import { startPrefillSpan } from "./prefill-span";
import { createRetainedCaches } from "./retained-caches";
import { assertRetryPolicy } from "./retry-policy";
import { runPrefillAttempts } from "./run-prefill-attempts";

/**
 * Offloads the prefill of `request` to `device` and hands the cache to `options.sink` layer by
 * layer. A broken stream resumes from its last verified position with FetchKv while the lease
 * holds; otherwise the prefill is retried (same `request_id`) with backoff and jitter that honours
 * the device's RetryInfo; a device whose `accepted` descriptor contradicts the request is not asked
 * again (a pool's retry goes to another device). `timeoutMs` and `signal` bound everything, retries
 * and sink calls included: a sink call that has not returned when they end the run is left running, and its sink
 * is aborted once it returns (otherwise a failed attempt's sink is aborted before the run goes on
 * or rejects). With `retentionSeconds > 0`, the caches devices retained for attempts whose result
 * is not returned (all of them when the run fails) are released in the background when the run
 * ends, best effort; the returned `kvHandle` stays retained for the caller. Throws INVALID_ARGUMENT
 * at once for a bad `timeoutMs` or `retry` field, naming it.
 */
export function startPrefill<Receipt = import("@opal/kv").KvCache>(
  device: PrefillDriver,
  request: PrefillRequest,
  options: PrefillOptions<Receipt> = {},
): PrefillRun<Receipt> {
  assertRetryPolicy(options.retry);
  const startedAt = performance.now();
  const call = createCallSignal(options);
  const run: PrefillRunState<Receipt> = {
    device,
    request,
    newSink: (options.sink ?? createMemorySink) as () => KvSink<Receipt>,
    retry: options.retry ?? {},
    maxAttempts: options.retry?.maxAttempts ?? 4,
    resume: options.resume ?? true,
    signal: call.signal,
    span: startPrefillSpan(request, "pull"),
    startedAt,
    layers: createLayerDelivery(startedAt),
    retained: createRetainedCaches(device),
    resumes: 0,
    firstLayerAt: undefined,
  };
  const result = runPrefillAttempts(run).finally(() => call.dispose());
  result.then(
    () => run.layers.close(),
    (error) => run.layers.fail(error),
  );
  // The run is usable without iterating layers: keep an unobserved rejection from crashing the process.
  result.catch(() => {});
  return { result, [Symbol.asyncIterator]: () => run.layers[Symbol.asyncIterator]() };
}
