import {
  type CallOptions,
  createCallSignal,
  createChannel,
  OpalError,
  sleep,
  toAbortError,
} from "@opal/core";
import type { PrefillDriver, PrefillRequest, PrefillStats } from "@opal/driver";
import type { KvDescriptor, KvLayerParts } from "@opal/kv";
import { checkAcceptedDescriptor, retriesElsewhere } from "./check-accepted-descriptor";
import type { KvSink } from "./kv-sink";
import {
  endPrefillSpan,
  failPrefillSpan,
  recordAttemptFailure,
  startPrefillSpan,
} from "./prefill-span";
import { readKvStream, type StreamProgress } from "./read-kv-stream";
import { assertRetryPolicy, backoffMs, isRetryable, type RetryPolicy } from "./retry-policy";
import { createMemorySink } from "./sinks/memory-sink";
import { untilAborted } from "./until-aborted";

/** How long releasing an abandoned attempt's retained cache may take, in ms. */
const RELEASE_TIMEOUT_MS = 2_000;

/** A layer that arrived complete and verified (every chunk's CRC32C checked). */
export interface LayerReady {
  readonly layer: number;
  readonly descriptor: KvDescriptor;
  /** The layer's parts: views the run does not reuse (they stay valid; copy only to detach them). */
  readonly parts: KvLayerParts["parts"];
  /** Time since the call started, in milliseconds. */
  readonly elapsedMs: number;
}

/** Transfer figures measured by the client. */
export interface TransferStats {
  readonly kvBytes: number;
  /** From the first to the last chunk of the successful attempt, in seconds. */
  readonly streamSeconds: number;
  /** kvBytes / streamSeconds / 1e9. */
  readonly gigabytesPerSecond: number;
  /** From the call to the first complete layer, in milliseconds. */
  readonly timeToFirstLayerMs: number;
  /** From the call to the committed cache, in milliseconds. */
  readonly totalMs: number;
  /** Prefill attempts made (1 without retries). */
  readonly attempts: number;
  /** Streams resumed with FetchKv after a break. */
  readonly resumes: number;
}

/** A verified, complete, committed cache and what the device and the client measured. */
export interface PrefillOutcome<Receipt> {
  /** The sink's receipt: for the default memory sink, the `KvCache`. */
  readonly receipt: Receipt;
  readonly descriptor: KvDescriptor;
  /**
   * The cache's handle on the device that served it; with `retentionSeconds > 0` the retained
   * cache, for `fetchKv` and `releaseKv` on the same driver (a pool routes it to that device).
   */
  readonly kvHandle: string;
  /**
   * The device that served the cache: a pool's member target (`pool.targetOf(kvHandle)`), a device
   * client's target; undefined for an in-process driver.
   */
  readonly servedBy: string | undefined;
  readonly stats: PrefillStats;
  readonly transfer: TransferStats;
}

/** Options of {@link startPrefill}. */
export interface PrefillOptions<Receipt> extends CallOptions {
  /**
   * Creates the sink the cache goes to; default a memory sink (receipt: `KvCache`). Each attempt gets
   * a fresh sink, and a failed attempt's sink is aborted, so nothing of a failed attempt is ever used.
   */
  readonly sink?: () => KvSink<Receipt>;
  /** Retries of failed attempts (same `request_id`, so the device deduplicates). */
  readonly retry?: RetryPolicy;
  /**
   * Resume a broken stream from the last verified position with FetchKv while the cache is retained
   * (the request has `retentionSeconds > 0` and the device declares resume); default true.
   */
  readonly resume?: boolean;
}

/**
 * A running prefill: iterate it for layers as they become ready (optional), and await `result`.
 * The stream is driven whether or not anyone iterates. Iterating starts with the first `next()`
 * (taking the iterator alone, as `Readable.from(run)` does, holds nothing back): start before the
 * first layer arrives to see every layer, since layers are not buffered for a consumer that has
 * not started. While one is iterating, the stream waits for it (at most one layer is buffered), so
 * a consumer that stops calling `next()` without ending its loop (`break`, `return()`) holds the
 * run until its deadline: do not await `result` inside the loop. A retried attempt starts again
 * from layer 0; layers of a failed attempt were verified chunk by chunk but are not part of
 * `result`.
 */
export interface PrefillRun<Receipt> extends AsyncIterable<LayerReady> {
  /**
   * Resolves only after the sink committed a complete cache whose every chunk passed its CRC32C and
   * whose whole-cache digest and size match the device's; otherwise rejects with an `OpalError` (DATA_LOSS
   * CHECKSUM_MISMATCH or STREAM_INCOMPLETE; FAILED_PRECONDITION DESCRIPTOR_MISMATCH, naming the field,
   * when `accepted`'s descriptor contradicts the request (PF-12), before any sink is opened; or the
   * device's error after the retries) and the sink is aborted.
   */
  readonly result: Promise<PrefillOutcome<Receipt>>;
}

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
  // Layers are delivered only to a consumer that iterates, with back-pressure (one buffered), so a
  // run nobody iterates holds no layers, and a slow consumer slows the stream instead of growing memory.
  let iterating = false;
  const layers = createChannel<LayerReady>({ capacity: 1 });
  const started = performance.now();
  const newSink = (options.sink ?? createMemorySink) as () => KvSink<Receipt>;
  const call = createCallSignal(options);
  const signal = call.signal;
  const maxAttempts = options.retry?.maxAttempts ?? 4;
  const span = startPrefillSpan(request, "pull");

  // Handles of caches the device retains for this run's attempts: the ones nobody will use are
  // released when the run ends (the lease would free them, later). In the background: the run's
  // result never waits for a device to answer a release.
  const retained = new Set<string>();
  const releaseExcept = (kept?: string) => {
    for (const handle of retained) {
      if (handle !== kept)
        device.releaseKv(handle, { timeoutMs: RELEASE_TIMEOUT_MS }).catch(() => {});
    }
  };

  // Sink calls in progress, and when the last one settles. `signal` ends the run even while one is
  // stuck; that sink is aborted in the background once the call returns (never during it).
  let sinkCalls = 0;
  let sinkIdle = Promise.resolve();
  const bySink = <T>(operation: () => T | Promise<T>): Promise<T> => {
    if (signal.aborted) return Promise.reject(toAbortError(signal.reason));
    sinkCalls++;
    const running = Promise.resolve()
      .then(operation)
      .finally(() => {
        sinkCalls--;
      });
    sinkIdle = running.then(
      () => {},
      () => {},
    );
    return untilAborted(running, signal);
  };

  const result = (async (): Promise<PrefillOutcome<Receipt>> => {
    let resumes = 0;
    let firstLayerAt = 0;
    for (let attempt = 1; ; attempt++) {
      const progress: StreamProgress = { attemptStartedAt: performance.now() };
      let opened = false;
      let sink: KvSink<Receipt> | undefined;
      const onLayer = async (layer: KvLayerParts, descriptor: KvDescriptor) => {
        firstLayerAt ||= performance.now();
        await bySink(() => sink!.writeLayer(layer));
        if (!iterating) return;
        const ready = {
          layer: layer.layer,
          descriptor,
          // A consumer that started after `accepted` gets layers whose buffers the next layer
          // reuses (a sink that copies): it gets copies, which stay valid as promised.
          parts: layer.stable ? layer.parts : copyParts(layer.parts),
          elapsedMs: performance.now() - started,
        };
        // A consumer that stopped iterating makes send reject: stop delivering, keep streaming.
        await layers.send(ready, signal).catch(() => {
          iterating = false;
        });
      };
      const onAccepted = async (descriptor: KvDescriptor) => {
        opened = true;
        if ((request.retentionSeconds ?? 0) > 0 && progress.kvHandle)
          retained.add(progress.kvHandle);
        await bySink(() => sink!.open(descriptor));
      };
      try {
        sink = newSink();
        // Only an iterating consumer or a sink that keeps views needs buffers nobody reuses.
        const reuseLayerBuffers = () => !iterating && !sink!.keepsLayerViews;
        // A sink that keeps the layers keeps the chunks they are made of (the memory sink).
        const keepsChunks = sink.keepsLayerViews === true;
        let outcome = await readKvStream(
          device.prefill(request, { signal, keepsChunks }),
          progress,
          {
            onAccepted,
            onLayer,
            reuseLayerBuffers,
            ownsChunks: device.yieldsOwnedChunks === true,
            checkDescriptor: (descriptor) => checkAcceptedDescriptor(request, descriptor),
          },
        );
        while (outcome.kind === "broken") {
          // Resume only what is missing; a complete cache that failed its final check is retried whole.
          const canResume =
            (options.resume ?? true) &&
            (request.retentionSeconds ?? 0) > 0 &&
            progress.kvHandle &&
            progress.assembler &&
            !progress.assembler.complete;
          if (!canResume || !isRetryable(outcome.error)) throw outcome.error;
          resumes++;
          recordAttemptFailure(span, attempt, outcome.error, "resume");
          const broken = outcome.error;
          const position = progress.position!;
          outcome = await readKvStream(
            device.fetchKv(
              {
                kvHandle: progress.kvHandle!,
                resumeFrom: position,
                ...(request.maxChunkBytes ? { maxChunkBytes: request.maxChunkBytes } : {}),
              },
              { signal, keepsChunks },
            ),
            progress,
            { onAccepted: async () => {}, onLayer },
          );
          if (outcome.kind === "broken" && !isRetryable(outcome.error)) {
            // The device no longer holds the cache (its lease ended, it restarted, it refused):
            // resuming cannot work, so the attempt fails as the stream did and is retried whole.
            throw new OpalError(
              broken.code,
              `${broken.rawMessage}; resuming failed: ${outcome.error.message}`,
              {
                reason: broken.reason,
                cause: outcome.error,
                ...(broken.retryDelayMs !== undefined ? { retryDelayMs: broken.retryDelayMs } : {}),
              },
            );
          }
          if (outcome.kind === "broken" && resumes >= maxAttempts) throw outcome.error;
        }
        const { stats, descriptor } = outcome;
        const receipt = await bySink(() => sink!.commit(stats));
        const done = performance.now();
        const streamSeconds = Math.max(
          ((progress.lastChunkAt ?? done) - (progress.firstChunkAt ?? done)) / 1000,
          1e-9,
        );
        const transfer: TransferStats = {
          kvBytes: stats.kvTotalBytes,
          streamSeconds,
          gigabytesPerSecond: stats.kvTotalBytes / streamSeconds / 1e9,
          timeToFirstLayerMs: firstLayerAt - started,
          totalMs: done - started,
          attempts: attempt,
          resumes,
        };
        endPrefillSpan(span, stats, transfer);
        releaseExcept(progress.kvHandle);
        const kvHandle = progress.kvHandle ?? "";
        const servedBy = servedByOf(device, kvHandle);
        return { receipt, descriptor, kvHandle, servedBy, stats, transfer };
      } catch (caught) {
        const error = signal.aborted ? OpalError.from(signal.reason) : OpalError.from(caught);
        if (opened) {
          // Waited for, unless a sink call is stuck (the signal ended the run while it ran): that
          // sink aborts once the call returns, after the run has ended.
          const stuck = sinkCalls > 0;
          const aborting = sinkIdle.then(() => sink!.abort(error)).catch(() => {});
          if (!stuck) await aborting;
        }
        // A device that broke the protocol is not asked again; a pool's retry goes elsewhere.
        const retryable = isRetryable(error) || retriesElsewhere(device, error);
        if (signal.aborted || !retryable || attempt >= maxAttempts) {
          failPrefillSpan(span, error);
          releaseExcept();
          throw error;
        }
        recordAttemptFailure(span, attempt, error, "retry");
        try {
          await sleep(backoffMs(options.retry ?? {}, attempt, error), signal);
        } catch (stopped) {
          // The deadline or the caller ended the run during the backoff.
          const ended = OpalError.from(stopped);
          failPrefillSpan(span, ended);
          releaseExcept();
          throw ended;
        }
      }
    }
  })().finally(() => call.dispose());
  result.then(
    () => layers.close(),
    (error) => layers.fail(error),
  );
  // The run is usable without iterating layers: keep an unobserved rejection from crashing the process.
  result.catch(() => {});
  return {
    result,
    [Symbol.asyncIterator]: () => {
      const consumer = layers[Symbol.asyncIterator]();
      return {
        next() {
          iterating = true;
          return consumer.next();
        },
        return: () => consumer.return!(),
      };
    },
  };
}

/** Copies of a layer's parts, for a consumer that keeps them. */
function copyParts(parts: KvLayerParts["parts"]): KvLayerParts["parts"] {
  return Object.fromEntries(
    Object.entries(parts).map(([name, view]) => [name, view?.slice()]),
  ) as KvLayerParts["parts"];
}

/** The target that served `kvHandle`: a pool's member (its `targetOf`), or a client's `target`. */
function servedByOf(device: PrefillDriver, kvHandle: string): string | undefined {
  const d = device as { targetOf?: (handle: string) => string | undefined; target?: unknown };
  if (typeof d.targetOf === "function") return d.targetOf(kvHandle);
  return typeof d.target === "string" ? d.target : undefined;
}
