import { createHash } from "node:crypto";
import type { PrefillEvent } from "@opal/driver";
import { crc32cOf, createKvDigest, type KvChunk, type KvPart } from "@opal/kv";
import { keepChunk, type Mutant, mapEvents, mapPrefill } from "./mutant";
import { overrideDriver } from "./mutant-device";

/** Within each layer: the parts in `order` (a device that writes parts in its own memory order). */
async function* partsInOrder(
  events: AsyncIterable<PrefillEvent>,
  order: readonly KvPart[],
): AsyncIterable<PrefillEvent> {
  let layer: KvChunk[] = [];
  const flush = function* () {
    const rank = (c: KvChunk) => (order.includes(c.part) ? order.indexOf(c.part) : order.length);
    for (const chunk of layer.sort((a, b) => rank(a) - rank(b)))
      yield { type: "chunk" as const, chunk };
    layer = [];
  };
  for await (const event of events) {
    if (event.type === "chunk") {
      if (layer.length > 0 && layer[0]!.layer !== event.chunk.layer) yield* flush();
      layer.push(keepChunk(event.chunk));
      continue;
    }
    yield* flush();
    yield event;
  }
}

/** f32 bytes (little-endian) to bf16 by dropping the low half: truncation, not rounding. */
function truncateToBf16(f32: Uint8Array): Uint8Array {
  const out = new Uint8Array(f32.byteLength / 2);
  for (let i = 0; i < f32.byteLength / 4; i++) {
    out[2 * i] = f32[4 * i + 2]!;
    out[2 * i + 1] = f32[4 * i + 3]!;
  }
  return out;
}

/** Mutants of the KV stream: order, sizes, checksums, completion, descriptor and bytes. */
export const STREAM_MUTANTS: readonly Mutant[] = [
  {
    name: "streams V before K within each layer",
    mutation: (mock) => mapPrefill(mock, (events) => partsInOrder(events, ["v", "k"])),
    fails: ["stream.canonical-order", "stream.digest"],
    // The order is canonical-order's finding; the digest test finds the bytes it cannot match.
    cites: /PF-13|PF-25/,
  },
  {
    name: "skips the second chunk (an offset gap)",
    mutation: (mock) => {
      let n = 0;
      return mapPrefill(mock, (events) =>
        mapEvents(events, (e) => (e.type === "chunk" && ++n === 2 ? undefined : e)),
      );
    },
    fails: ["stream.canonical-order"],
    cites: /PF-13/,
  },
  {
    name: "computes each chunk's CRC32C over all but its last byte",
    mutation: (mock) =>
      mapPrefill(mock, (events) =>
        mapEvents(events, (e) =>
          e.type === "chunk"
            ? { ...e, chunk: { ...e.chunk, crc32c: crc32cOf(e.chunk.data.subarray(0, -1)) } }
            : e,
        ),
      ),
    fails: ["stream.canonical-order"],
    cites: /PF-15/,
  },
  {
    name: "sends a SHA-256 prefix as kv_digest (the digest of the first drafts)",
    mutation: (mock) =>
      mapPrefill(mock, async function* (events) {
        const sha = createHash("sha256");
        for await (const e of events) {
          if (e.type === "chunk") sha.update(e.chunk.data);
          if (e.type === "completed") {
            const kvDigest = new Uint8Array(sha.digest().subarray(0, 16));
            yield { ...e, stats: { ...e.stats, kvDigest } };
          } else yield e;
        }
      }),
    fails: ["stream.digest", "prefill.formats"],
    cites: /PF-25/,
  },
  {
    name: "reports the bytes of one layer as kv_total_bytes",
    mutation: (mock) =>
      mapPrefill(mock, async function* (events) {
        let layers = 1;
        for await (const e of events) {
          if (e.type === "accepted") layers = e.descriptor.numLayers;
          if (e.type === "completed")
            yield { ...e, stats: { ...e.stats, kvTotalBytes: e.stats.kvTotalBytes / layers } };
          else yield e;
        }
      }),
    fails: ["stream.digest"],
    cites: /PF-26/,
  },
  {
    name: "ends the stream OK without `completed`",
    mutation: (mock) =>
      mapPrefill(mock, (events) =>
        mapEvents(events, (e) => (e.type === "completed" ? undefined : e)),
      ),
    fails: ["stream.canonical-order", "prefill.sdk-client"],
    cites: /PF-26/,
  },
  {
    name: "sends `completed` before the last chunk",
    mutation: (mock) =>
      mapPrefill(mock, async function* (events) {
        let last: PrefillEvent | undefined;
        for await (const e of events) {
          if (e.type === "chunk") {
            if (last) yield last;
            last = { type: "chunk", chunk: keepChunk(e.chunk) };
          } else if (e.type === "completed") {
            yield e;
            if (last) yield last;
          } else yield e;
        }
      }),
    fails: ["stream.canonical-order"],
    cites: /PF-28|PF-10/,
  },
  {
    name: "ignores max_chunk_bytes (always its preferred chunk size)",
    mutation: (mock) =>
      mapPrefill(
        mock,
        (events) => events,
        (r) => ({ ...r, maxChunkBytes: 0 }),
      ),
    fails: ["stream.canonical-order"],
    cites: /PF-14/,
  },
  {
    name: "ignores max_chunk_bytes of FetchKv",
    mutation: (mock) =>
      overrideDriver(mock, {
        fetchKv: (r, options) => mock.fetchKv({ ...r, maxChunkBytes: 0 }, options),
      }),
    fails: ["retention.fetch"],
    cites: /PF-14/,
  },
  {
    name: "ignores the requested dtype (always f32, described as f32)",
    mutation: (mock) =>
      mapPrefill(
        mock,
        (events) => events,
        (r) =>
          r.kvFormat ? { ...r, kvFormat: { ...r.kvFormat, dtype: "f32", scaleScheme: "none" } } : r,
      ),
    fails: ["prefill.formats"],
    cites: /PF-12/,
  },
  {
    name: "streams NHD bytes under the requested layout",
    mutation: (mock) =>
      mapPrefill(
        mock,
        (events, request) =>
          mapEvents(events, (e) =>
            e.type === "accepted" && request.kvFormat?.layout === "hnd"
              ? { ...e, descriptor: { ...e.descriptor, layout: "hnd" } }
              : e,
          ),
        (r) => (r.kvFormat ? { ...r, kvFormat: { ...r.kvFormat, layout: "nhd" } } : r),
      ),
    fails: ["prefill.formats"],
    cites: /PF-38/,
  },
  {
    name: "slices heads from 0 instead of head_range.start",
    mutation: (mock) =>
      mapPrefill(
        mock,
        (events, request) =>
          mapEvents(events, (e) =>
            e.type === "accepted" && request.kvFormat?.headRange
              ? { ...e, descriptor: { ...e.descriptor, headRange: request.kvFormat.headRange } }
              : e,
          ),
        (r) =>
          r.kvFormat?.headRange
            ? {
                ...r,
                kvFormat: { ...r.kvFormat, headRange: { ...r.kvFormat.headRange, start: 0 } },
              }
            : r,
      ),
    fails: ["prefill.head-range"],
    cites: /PF-38/,
  },
  {
    name: "leaves out the last prompt token's KV",
    mutation: (mock) =>
      mapPrefill(
        mock,
        (events, request) =>
          mapEvents(events, (e) =>
            e.type === "completed"
              ? { ...e, stats: { ...e.stats, promptTokens: request.promptTokenIds.length } }
              : e,
          ),
        (r) => ({ ...r, promptTokenIds: r.promptTokenIds.subarray(0, -1) }),
      ),
    fails: ["stream.descriptor"],
    cites: /PF-12: token_count/,
  },
  {
    name: "describes a looser numerics bound than its capabilities",
    mutation: (mock) =>
      mapPrefill(mock, (events) =>
        mapEvents(events, (e) =>
          e.type === "accepted"
            ? {
                ...e,
                descriptor: {
                  ...e.descriptor,
                  numerics: { ...e.descriptor.numerics, bitExact: false, maxAbsError: 1e-3 },
                },
              }
            : e,
        ),
      ),
    fails: ["stream.descriptor"],
    cites: /PF-40/,
  },
  {
    name: "converts f32 to bf16 by truncation instead of rounding to nearest even",
    mutation: (mock) =>
      mapPrefill(
        mock,
        async function* (events, request) {
          if (request.kvFormat?.dtype !== "bf16") return yield* events;
          const digest = createKvDigest();
          for await (const e of events) {
            if (e.type === "accepted") {
              yield { ...e, descriptor: { ...e.descriptor, dtype: "bf16" } };
            } else if (e.type === "chunk") {
              const data = truncateToBf16(e.chunk.data);
              digest.update(data);
              const offsetBytes = e.chunk.offsetBytes / 2;
              yield {
                type: "chunk",
                chunk: { ...e.chunk, offsetBytes, data, crc32c: crc32cOf(data) },
              };
            } else if (e.type === "completed") {
              const kvTotalBytes = e.stats.kvTotalBytes / 2;
              yield { ...e, stats: { ...e.stats, kvTotalBytes, kvDigest: digest.digest() } };
            } else yield e;
          }
        },
        (r) =>
          r.kvFormat?.dtype === "bf16" ? { ...r, kvFormat: { ...r.kvFormat, dtype: "f32" } } : r,
      ),
    fails: ["prefill.formats"],
    cites: /bf16|BF16/,
  },
];
