import { Code, OpalError, Reason } from "@opal/core";
import type { PrefillEvent } from "@opal/driver";
import { allocateKvMemory, cacheByteLength } from "@opal/kv";
import { fromWireChunk, fromWirePrefillEvent, type opal } from "@opal/protocol";
import type { SharedMemoryRegion } from "./shared-memory-regions";

type PrefillResponse = opal.device.v1.PrefillResponse;

/** Reads in flight at most: as many as libuv has threads by default. */
const READ_AHEAD = 4;
/** Slabs for a caller that copies chunks: its memory stays bounded (a file sink, a paged pool). */
const SMALL_SLAB_BYTES = 8 * 1024 * 1024;
/**
 * Slabs for a caller that keeps chunks: one allocation per GiB of cache, not per few megabytes,
 * in huge pages where `@opal/kv` can (`allocateKvMemory`): filling fresh memory is this path's
 * main cost, and 2 MiB pages fault 512 times less often.
 */
const LARGE_SLAB_BYTES = 1024 * 1024 * 1024;

/**
 * The events of a prefill whose bytes a device writes into `region` (PF-42, PF-43): each chunk's
 * bytes are read from the region, once its message arrives, into memory the caller owns: views of
 * slabs carved in stream order, of up to 1 GiB when the caller keeps chunks (`keepsChunks`, the
 * default: every allocation of external memory costs V8 garbage-collection work, about a fifth of
 * the throughput at 8 MiB slabs) and of 8 MiB when it copies them (memory stays bounded: a 4 GiB
 * cache into a file sink peaks at about 220 MiB RSS), so the events look
 * exactly like an inline stream's (CRC and digest checks downstream are unchanged). Up to four
 * reads run in the thread pool while the caller verifies earlier chunks; each event is yielded, in
 * order, as soon as its bytes are in. A chunk without `data_ref`, with inline data, or whose
 * reference is not the next canonical offset or ends past the cache or the region, and a failed
 * read, are a broken stream (DATA_LOSS STREAM_INCOMPLETE). `onCompleted` is called when the
 * device's `completed` arrives: from then on it writes nothing more into the region.
 * When the caller stops early, `cancel` must end `messages`; the generator returns only once no
 * read is left in flight, so the region can be released or reused right after.
 */
export async function* readRegionChunks(
  messages: AsyncIterable<PrefillResponse>,
  region: SharedMemoryRegion,
  hooks: {
    readonly onCompleted: () => void;
    readonly cancel: () => void;
    readonly keepsChunks?: boolean;
  },
): AsyncGenerator<PrefillEvent> {
  const slabs =
    hooks.keepsChunks === false
      ? { bytes: SMALL_SLAB_BYTES, allocate: Buffer.allocUnsafeSlow }
      : { bytes: LARGE_SLAB_BYTES, allocate: allocateKvMemory };
  const toEvent = eventReader(region, hooks.onCompleted, slabs);
  // Events in order; `undefined` ends the stream. Each promise is marked handled at once: it is
  // awaited later, in order, and must not count as an unhandled rejection meanwhile.
  const queue: Promise<PrefillEvent | undefined>[] = [];
  let wakeConsumer: (() => void) | undefined;
  let wakePump: (() => void) | undefined;
  let stopped = false;
  const push = (event: Promise<PrefillEvent | undefined>) => {
    event.catch(() => {});
    queue.push(event);
    wakeConsumer?.();
  };
  const pump = (async () => {
    try {
      for await (const message of messages) {
        push(toEvent(message));
        while (queue.length >= READ_AHEAD && !stopped) {
          await new Promise<void>((resolve) => {
            wakePump = resolve;
          });
        }
        if (stopped) return;
      }
      push(Promise.resolve(undefined));
    } catch (error) {
      push(Promise.reject(error));
    }
  })();
  try {
    for (;;) {
      while (queue.length === 0) {
        await new Promise<void>((resolve) => {
          wakeConsumer = resolve;
        });
      }
      // Leave the head in the queue until it resolved: the queue's length bounds the reads in flight.
      const event = await queue[0]!;
      queue.shift();
      wakePump?.();
      if (event === undefined) return;
      yield event;
    }
  } finally {
    stopped = true;
    wakePump?.();
    hooks.cancel();
    await pump;
    await Promise.allSettled(queue);
  }
}

/** Turns each message into its event; a chunk's event resolves once its bytes are read. */
function eventReader(
  region: SharedMemoryRegion,
  onCompleted: () => void,
  slabs: { readonly bytes: number; readonly allocate: (bytes: number) => Buffer },
) {
  let canonicalBytes = 0;
  let totalBytes = 0;
  let slab: Buffer | undefined;
  let slabAt = 0;
  /** A view for the next chunk, 8-byte aligned (so layers can be viewed as typed arrays). */
  const carve = (length: number): Buffer => {
    if (!slab || slabAt + length > slab.byteLength) {
      const rest = totalBytes - canonicalBytes;
      slab = slabs.allocate(Math.max(length, Math.min(slabs.bytes, rest + 4096)));
      slabAt = 0;
    }
    const view = slab.subarray(slabAt, slabAt + length);
    slabAt += Math.ceil(length / 8) * 8;
    return view;
  };
  return (message: PrefillResponse): Promise<PrefillEvent> => {
    if (!message.chunk) {
      const event = fromWirePrefillEvent(message);
      if (event.type === "accepted") totalBytes = cacheByteLength(event.descriptor);
      if (event.type === "completed") onCompleted();
      return Promise.resolve(event);
    }
    if (totalBytes === 0) throw broken("a chunk arrived before `accepted`");
    const ref = message.chunk.dataRef;
    if (!ref) throw broken("a chunk arrived without data_ref on the shared-memory plane (PF-42)");
    if (message.chunk.data?.byteLength) {
      throw broken("a chunk carried both data and data_ref (PF-42)");
    }
    const offsetBytes = Number(ref.offsetBytes ?? 0);
    const lengthBytes = Number(ref.lengthBytes ?? 0);
    if (offsetBytes !== canonicalBytes) {
      throw broken(
        `data_ref.offset_bytes ${offsetBytes} is not the next canonical offset ${canonicalBytes} (PF-43)`,
      );
    }
    const end = offsetBytes + lengthBytes;
    if (end > totalBytes || end > region.lengthBytes) {
      throw broken(
        `data_ref [${offsetBytes}, ${end}) ends past the cache (${totalBytes} bytes) or the region (${region.lengthBytes})`,
      );
    }
    const chunk = fromWireChunk(message.chunk);
    const data = carve(lengthBytes);
    canonicalBytes = end;
    return region.readInto(data, offsetBytes).then(
      (): PrefillEvent => ({ type: "chunk", chunk: { ...chunk, data } }),
      (error: unknown) => {
        throw broken(`reading the region ${region.name} failed: ${(error as Error).message}`);
      },
    );
  };
}

function broken(message: string): OpalError {
  return new OpalError(Code.DATA_LOSS, message, { reason: Reason.STREAM_INCOMPLETE });
}
