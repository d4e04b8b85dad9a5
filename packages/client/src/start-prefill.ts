import { type CallOptions, Code, createChannel, OpalError, Reason } from "@opal/core";
import type { PrefillDriver, PrefillRequest, PrefillStats } from "@opal/driver";
import {
  createKvAssembler,
  createKvDigest,
  fromKvParts,
  type KvCache,
  type KvDescriptor,
  type KvLayerParts,
  partsOf,
  toHex,
} from "@opal/kv";

/** A layer that arrived complete and verified (every chunk's CRC32C checked). */
export interface LayerReady {
  readonly layer: number;
  readonly descriptor: KvDescriptor;
  /** The layer's parts; views owned by the run's cache. */
  readonly parts: KvLayerParts["parts"];
  /** Time since the call started, in milliseconds. */
  readonly elapsedMs: number;
}

/** Transfer figures measured by the client. */
export interface TransferStats {
  readonly kvBytes: number;
  /** From the first to the last chunk, in seconds. */
  readonly streamSeconds: number;
  /** kvBytes / streamSeconds / 1e9. */
  readonly gigabytesPerSecond: number;
  /** From the call to the first complete layer, in milliseconds. */
  readonly timeToFirstLayerMs: number;
  /** From the call to the verified cache, in milliseconds. */
  readonly totalMs: number;
}

/** A verified, complete cache and what the device and the client measured. */
export interface PrefillOutcome {
  readonly cache: KvCache;
  readonly kvHandle: string;
  readonly stats: PrefillStats;
  readonly transfer: TransferStats;
}

/**
 * A running prefill: iterate it for layers as they become ready (optional), and await `result`
 * for the verified cache. The stream is driven whether or not anyone iterates.
 */
export interface PrefillRun extends AsyncIterable<LayerReady> {
  /**
   * Resolves only with a complete cache whose every chunk passed its CRC32C and whose SHA-256 digest
   * and size match the device's `completed`; otherwise rejects with an `OpalError` (DATA_LOSS
   * CHECKSUM_MISMATCH or STREAM_INCOMPLETE, or the device's error) and no cache is presented.
   */
  readonly result: Promise<PrefillOutcome>;
}

/** Offloads the prefill of `request` to `device` and assembles the cache layer by layer. */
export function startPrefill(
  device: PrefillDriver,
  request: PrefillRequest,
  options: CallOptions = {},
): PrefillRun {
  const layers = createChannel<LayerReady>({ capacity: Number.MAX_SAFE_INTEGER });
  const started = performance.now();
  const result = (async (): Promise<PrefillOutcome> => {
    let descriptor: KvDescriptor | undefined;
    let kvHandle = "";
    let assembler: ReturnType<typeof createKvAssembler> | undefined;
    const digest = createKvDigest();
    const ready: KvLayerParts[] = [];
    let firstChunkAt = 0;
    let lastChunkAt = 0;
    let firstLayerAt = 0;
    let bytes = 0;
    for await (const event of device.prefill(request, options)) {
      switch (event.type) {
        case "accepted":
          descriptor = event.descriptor;
          kvHandle = event.kvHandle;
          assembler = createKvAssembler(descriptor);
          break;
        case "chunk": {
          if (!assembler || !descriptor)
            throw protocolViolation("a chunk arrived before `accepted`");
          const now = performance.now();
          firstChunkAt ||= now;
          lastChunkAt = now;
          bytes += event.chunk.data.byteLength;
          const layer = assembler.accept(event.chunk);
          if (layer) {
            for (const part of partsOf(descriptor)) digest.update(layer.parts[part]!);
            ready.push(layer);
            firstLayerAt ||= performance.now();
            const elapsedMs = performance.now() - started;
            // Never blocks (unbounded count; the parts are held by the cache anyway). A consumer that
            // stopped iterating only stops receiving layers.
            layers
              .send({ layer: layer.layer, descriptor, parts: layer.parts, elapsedMs })
              .catch(() => {});
          }
          break;
        }
        case "completed": {
          if (!assembler || !descriptor)
            throw protocolViolation("`completed` arrived before `accepted`");
          if (!assembler.complete) {
            throw new OpalError(
              Code.DATA_LOSS,
              `stream completed at ${describe(assembler.next)} before the cache was complete`,
              {
                reason: Reason.STREAM_INCOMPLETE,
              },
            );
          }
          const ours = digest.digest();
          if (toHex(ours) !== toHex(event.stats.kvDigest) || bytes !== event.stats.kvTotalBytes) {
            throw new OpalError(
              Code.DATA_LOSS,
              `cache digest ${toHex(ours)} (${bytes} bytes) does not match the device's ${toHex(event.stats.kvDigest)} (${event.stats.kvTotalBytes} bytes)`,
              { reason: Reason.CHECKSUM_MISMATCH },
            );
          }
          const done = performance.now();
          const streamSeconds = Math.max((lastChunkAt - firstChunkAt) / 1000, 1e-9);
          return {
            cache: fromKvParts(
              descriptor,
              ready.map((l) => l.parts),
            ),
            kvHandle,
            stats: event.stats,
            transfer: {
              kvBytes: bytes,
              streamSeconds,
              gigabytesPerSecond: bytes / streamSeconds / 1e9,
              timeToFirstLayerMs: firstLayerAt - started,
              totalMs: done - started,
            },
          };
        }
        default:
          break;
      }
    }
    throw new OpalError(Code.DATA_LOSS, "the device's stream ended without `completed`", {
      reason: Reason.STREAM_INCOMPLETE,
    });
  })();
  result.then(
    () => layers.close(),
    (error) => layers.fail(error),
  );
  // The run is usable without iterating layers: keep an unobserved rejection from crashing the process.
  result.catch(() => {});
  return { result, [Symbol.asyncIterator]: () => layers[Symbol.asyncIterator]() };
}

function protocolViolation(message: string): OpalError {
  return new OpalError(Code.DATA_LOSS, `protocol violation: ${message}`, {
    reason: Reason.STREAM_INCOMPLETE,
  });
}

function describe(
  position: { layer: number; part: string; offsetBytes: number } | undefined,
): string {
  return position
    ? `layer ${position.layer} part ${position.part} offset ${position.offsetBytes}`
    : "the end";
}
