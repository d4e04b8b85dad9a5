import { Code, OpalError, Reason } from "@opal/core";
import type { PrefillEvent } from "@opal/driver";
import { cacheByteLength } from "@opal/kv";
import { fromWireChunk, fromWirePrefillEvent, type opal } from "@opal/protocol";
import type { SharedMemoryRegion } from "./shared-memory-regions";

type PrefillResponse = opal.device.v1.PrefillResponse;

/** Chunks read ahead of the one the caller is verifying: as many as libuv has threads by default. */
const READ_AHEAD = 4;

/**
 * The events of a prefill whose bytes a device writes into `region` (PF-42, PF-43): each chunk's
 * bytes are read from the region, once its message arrives, into one buffer the caller owns (chunks
 * are views of it at their canonical offsets), so the events look exactly like an inline stream's
 * (CRC and digest checks downstream are unchanged). Up to four reads run in the thread pool while
 * the caller verifies earlier chunks; each event is yielded, in order, as soon as its bytes are in.
 * A chunk without `data_ref`, with inline data, or whose reference is not the next canonical
 * offset or ends past the cache is a broken stream (DATA_LOSS STREAM_INCOMPLETE). `onCompleted` is
 * called when the device reports completion: from then on it writes nothing more into the region.
 * When the caller stops early, `cancel` must end `messages`; the generator returns only once no
 * read is left in flight, so the region can be released or reused right after.
 */
export async function* readRegionChunks(
  messages: AsyncIterable<PrefillResponse>,
  region: SharedMemoryRegion,
  hooks: { readonly onCompleted: () => void; readonly cancel: () => void },
): AsyncGenerator<PrefillEvent> {
  const toEvent = eventReader(region);
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
        while (queue.length > READ_AHEAD && !stopped) {
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
      const event = await queue.shift()!;
      wakePump?.();
      if (event === undefined) return;
      if (event.type === "completed") hooks.onCompleted();
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
function eventReader(region: SharedMemoryRegion) {
  let canonicalBytes = 0;
  // One allocation for the whole cache, sized at `accepted`: a buffer per chunk would make V8
  // collect garbage for every few megabytes of external memory.
  let cache: Buffer | undefined;
  return (message: PrefillResponse): Promise<PrefillEvent> => {
    if (!message.chunk) {
      const event = fromWirePrefillEvent(message);
      if (event.type === "accepted") {
        cache = Buffer.allocUnsafeSlow(cacheByteLength(event.descriptor));
      }
      return Promise.resolve(event);
    }
    if (!cache) throw broken("a chunk arrived before `accepted`");
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
    if (offsetBytes + lengthBytes > cache.byteLength) {
      throw broken(
        `data_ref [${offsetBytes}, +${lengthBytes}) ends past the cache's ${cache.byteLength} bytes`,
      );
    }
    canonicalBytes += lengthBytes;
    const chunk = fromWireChunk(message.chunk);
    const data = cache.subarray(offsetBytes, offsetBytes + lengthBytes);
    return region
      .readInto(data, offsetBytes)
      .then((): PrefillEvent => ({ type: "chunk", chunk: { ...chunk, data } }));
  };
}

function broken(message: string): OpalError {
  return new OpalError(Code.DATA_LOSS, message, { reason: Reason.STREAM_INCOMPLETE });
}
