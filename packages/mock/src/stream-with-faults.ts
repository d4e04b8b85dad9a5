import { Code, OpalError, Reason, sleep, throwIfAborted } from "@opal/core";
import type { PrefillEvent } from "@opal/driver";
import { createKvChunker, type KvCache, type KvChunk } from "@opal/kv";
import type { FaultInjector } from "./fault-injector";

/** Options of {@link streamWithFaults}. */
export interface StreamWithFaultsOptions {
  readonly chunkBytes: number;
  /**
   * Simulated compute per layer, in ms: layer `l` is released `(l + 1) * layerTimeMs` after the
   * stream starts, so the consumer's time on earlier layers overlaps later layers' compute.
   */
  readonly layerTimeMs: number;
  readonly faults: FaultInjector;
  readonly signal: AbortSignal;
  /** Called before a dropped-connection fault ends the stream (the server closes connections). */
  readonly onConnectionDrop?: () => void | Promise<void>;
  /** Called once, with the first chunk. */
  readonly onFirstChunk: () => void;
}

/**
 * The chunk events of `cache` as the mock streams them: layer by layer as simulated compute
 * finishes (streaming overlaps compute), with this stream's injected faults (a stall, a dropped
 * connection, an abort, a corrupt chunk; `FaultInjector.streamFaults`).
 */
export async function* streamWithFaults(
  cache: KvCache,
  options: StreamWithFaultsOptions,
): AsyncGenerator<PrefillEvent> {
  const { faults, signal } = options;
  const plan = faults.streamFaults();
  const chunker = createKvChunker(cache.descriptor, { maxChunkBytes: options.chunkBytes });
  let sent = 0;
  const startedMs = performance.now();
  for (let layer = 0; layer < cache.descriptor.numLayers; layer++) {
    // Due times count from the start, not from the previous layer: time spent streaming overlaps
    // compute, and timers that fire late (or round a sub-ms wait up to 1 ms) do not add up.
    const waitMs = startedMs + (layer + 1) * options.layerTimeMs - performance.now();
    if (waitMs > 0) await sleep(waitMs, signal);
    for (const chunk of chunker.chunkLayer(cache.layer(layer))) {
      throwIfAborted(signal);
      sent++;
      if (plan.stallAfter !== undefined && sent === plan.stallAfter + 1) {
        faults.count();
        await sleep(plan.stallMs, signal);
      }
      if (plan.dropAfter !== undefined && sent === plan.dropAfter + 1) {
        faults.count();
        await options.onConnectionDrop?.();
        throw injected("injected fault: connection dropped");
      }
      if (plan.abortAfter !== undefined && sent === plan.abortAfter + 1) {
        faults.count();
        throw injected(`injected fault: stream aborted after ${plan.abortAfter} chunks`);
      }
      if (sent === 1) options.onFirstChunk();
      yield { type: "chunk", chunk: sent === plan.corruptAt ? corrupt(chunk, faults) : chunk };
    }
  }
}

function injected(message: string): OpalError {
  return new OpalError(Code.UNAVAILABLE, message, {
    reason: Reason.DEVICE_FAULT,
    retryDelayMs: 10,
  });
}

/** A copy of `chunk` with one byte flipped and its original CRC (the corrupt-chunk fault). */
function corrupt(chunk: KvChunk, faults: FaultInjector): KvChunk {
  faults.count();
  const data = Uint8Array.from(chunk.data);
  const middle = data.length >> 1;
  data[middle] = (data[middle] ?? 0) ^ 0xff;
  return { ...chunk, data };
}
