import { Writable } from "node:stream";
import type { PrefillRequest } from "@opal/driver";
import pino, { type Logger } from "pino";

let counter = 0;

/** The KV format every reliability test asks for: f32, NHD, 16-token blocks, no scales. */
export const F32_NHD = {
  dtype: "f32",
  scaleScheme: "none",
  layout: "nhd",
  blockSizeTokens: 16,
} as const;

/**
 * A valid prefill of `opal-tiny` (vocabulary 258, 2 layers): `length` tokens (default 48) of a
 * deterministic prompt picked by `seed`, 1 KiB chunks, a fresh `request_id`; `patch` overrides.
 */
export function tinyRequest(
  patch: Partial<PrefillRequest> = {},
  { length = 48, seed = 1 }: { readonly length?: number; readonly seed?: number } = {},
): PrefillRequest {
  return {
    requestId: `reliability-${process.pid}-${++counter}`,
    modelId: "opal-tiny",
    promptTokenIds: Uint32Array.from({ length }, (_, i) => (seed * 37 + i * 11) % 258),
    kvFormat: F32_NHD,
    maxChunkBytes: 1024,
    ...patch,
  };
}

/** Every event of `events`, or the error that ended them. */
export async function settle<T>(events: AsyncIterable<T>): Promise<T[] | Error> {
  const seen: T[] = [];
  try {
    for await (const event of events) seen.push(event);
    return seen;
  } catch (error) {
    return error as Error;
  }
}

/** A pino logger at level "trace" that writes into memory; `text()` returns everything logged. */
export function createMemoryLogger(): { readonly logger: Logger; text(): string } {
  let text = "";
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString("utf8");
      done();
    },
  });
  return { logger: pino({ level: "trace" }, sink), text: () => text };
}
