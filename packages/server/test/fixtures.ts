import type { PrefillRequest } from "@opal/driver";

let counter = 0;

/** A small valid prefill of `opal-tiny` (2 layers): 32 tokens, f32, 512-byte chunks. */
export function tinyRequest(patch: Partial<PrefillRequest> = {}): PrefillRequest {
  return {
    requestId: `server-test-${process.pid}-${++counter}`,
    modelId: "opal-tiny",
    promptTokenIds: Uint32Array.from({ length: 32 }, (_, i) => (i * 5 + 1) % 50),
    kvFormat: { dtype: "f32", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
    maxChunkBytes: 512,
    ...patch,
  };
}

/** Reads `events` until `count` have arrived, then leaves the iterator open (the stream held). */
export async function readEvents<T>(
  events: AsyncIterable<T>,
  count: number,
): Promise<{ seen: T[]; iterator: AsyncIterator<T> }> {
  const iterator = events[Symbol.asyncIterator]();
  const seen: T[] = [];
  while (seen.length < count) {
    const next = await iterator.next();
    if (next.done) throw new Error(`the stream ended after ${seen.length} events`);
    seen.push(next.value);
  }
  return { seen, iterator };
}

/** Drains an iterator to its end; resolves with the events read. */
export async function drainIterator<T>(iterator: AsyncIterator<T>): Promise<T[]> {
  const rest: T[] = [];
  for (;;) {
    const next = await iterator.next();
    if (next.done) return rest;
    rest.push(next.value);
  }
}
