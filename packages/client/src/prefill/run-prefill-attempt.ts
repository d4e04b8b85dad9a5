import type { PrefillDriver, PrefillStats } from "@opal/driver";
import type { KvDescriptor, KvLayerParts } from "@opal/kv";
import { checkAcceptedDescriptor } from "./check-accepted-descriptor";
import { hasTargetOf } from "./has-target-of";
import type { PrefillOutcome, TransferStats } from "./prefill-run";
import type { PrefillRunState } from "./prefill-run-state";
import { endPrefillSpan } from "./prefill-span";
import type { StreamHooks, StreamProgress } from "./read-kv-stream";
import { readWithResume } from "./read-with-resume";
import type { SinkSerialiser } from "./sink-serialiser";

/**
 * Attempt number `attempt` of `run`: streams the prefill into `sink` (resuming breaks, see
 * `readWithResume`), delivers each layer to the run's consumer, commits the sink, and resolves
 * with the outcome, releasing the caches other attempts retained. Throws what breaks the attempt;
 * the caller aborts the sink and decides on a retry.
 */
export async function runPrefillAttempt<Receipt>(
  run: PrefillRunState<Receipt>,
  attempt: number,
  sink: SinkSerialiser<Receipt>,
): Promise<PrefillOutcome<Receipt>> {
  const progress: StreamProgress = { attemptStartedAt: performance.now() };
  const hooks = attemptHooks(run, sink, progress);
  // A sink that keeps the layers keeps the chunks they are made of (the memory sink).
  const keepsChunks = sink.keepsLayerViews;
  const { stats, descriptor } = await readWithResume(run, {
    attempt,
    progress,
    hooks,
    keepsChunks,
  });
  const receipt = await sink.commit(stats);
  const transfer = toTransferStats(run, progress, stats, attempt);
  endPrefillSpan(run.span, stats, transfer);
  run.retained.releaseExcept(progress.kvHandle);
  const kvHandle = progress.kvHandle ?? "";
  const servedBy = servedByOf(run.device, kvHandle);
  return { receipt, descriptor, kvHandle, servedBy, stats, transfer };
}

/** The stream hooks of one attempt: the sink takes each layer, then the run's consumer. */
function attemptHooks<Receipt>(
  run: PrefillRunState<Receipt>,
  sink: SinkSerialiser<Receipt>,
  progress: StreamProgress,
): StreamHooks {
  return {
    async onAccepted(descriptor: KvDescriptor) {
      if ((run.request.retentionSeconds ?? 0) > 0 && progress.kvHandle)
        run.retained.add(progress.kvHandle);
      await sink.open(descriptor);
    },
    async onLayer(layer: KvLayerParts, descriptor: KvDescriptor) {
      run.firstLayerAt ??= performance.now();
      await sink.writeLayer(layer);
      await run.layers.deliver(layer, descriptor, run.signal);
    },
    // Only an iterating consumer or a sink that keeps views needs buffers nobody reuses.
    reuseLayerBuffers: () => run.layers.consumer !== "iterating" && !sink.keepsLayerViews,
    ownsChunks: run.device.yieldsOwnedChunks === true,
    checkDescriptor: (descriptor) => checkAcceptedDescriptor(run.request, descriptor),
  };
}

/** The client's figures of a successful attempt, number `attempt`, now. */
function toTransferStats(
  run: PrefillRunState<unknown>,
  progress: StreamProgress,
  stats: PrefillStats,
  attempt: number,
): TransferStats {
  const done = performance.now();
  const streamSeconds = Math.max(
    ((progress.lastChunkAt ?? done) - (progress.firstChunkAt ?? done)) / 1000,
    1e-9,
  );
  return {
    kvBytes: stats.kvTotalBytes,
    streamSeconds,
    gigabytesPerSecond: stats.kvTotalBytes / streamSeconds / 1e9,
    timeToFirstLayerMs: (run.firstLayerAt ?? 0) - run.startedAt,
    totalMs: done - run.startedAt,
    attempts: attempt,
    resumes: run.resumes,
  };
}

/** The target that served `kvHandle`: a pool's member (its `targetOf`), or a client's `target`. */
function servedByOf(device: PrefillDriver, kvHandle: string): string | undefined {
  if (hasTargetOf(device)) return device.targetOf(kvHandle);
  return "target" in device && typeof device.target === "string" ? device.target : undefined;
}
