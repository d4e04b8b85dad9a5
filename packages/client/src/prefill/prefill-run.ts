import type { CallOptions } from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import type { KvDescriptor, KvLayerParts } from "@opal/kv";
import type { KvSink } from "../sinks/kv-sink";
import type { RetryPolicy } from "./retry-policy";

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

/** Options of `startPrefill`. */
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
