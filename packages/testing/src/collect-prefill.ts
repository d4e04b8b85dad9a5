import type { FetchEvent, PrefillEvent } from "@opal/driver";
import {
  createKvAssembler,
  digestKvCache,
  fromKvParts,
  type KvDescriptor,
  type KvLayerParts,
  partsOf,
} from "@opal/kv";
import { expect } from "vitest";

/** A prefill's events, collected and checked against the stream rules. */
export interface CollectedPrefill {
  readonly events: readonly PrefillEvent[];
  readonly descriptor: KvDescriptor;
  readonly kvHandle: string;
  readonly layers: readonly KvLayerParts[];
  readonly stats: Extract<PrefillEvent, { type: "completed" }>["stats"];
}

/**
 * Collects a prefill stream, asserting the protocol's stream rules on the way: `accepted` first,
 * chunks in canonical order with valid CRC32C, `completed` last with the total and digest of the
 * bytes received.
 */
export async function collectPrefill(
  events: AsyncIterable<PrefillEvent | FetchEvent>,
): Promise<CollectedPrefill> {
  const seen: PrefillEvent[] = [];
  let descriptor: KvDescriptor | undefined;
  let kvHandle = "";
  let assembler: ReturnType<typeof createKvAssembler> | undefined;
  const layers: KvLayerParts[] = [];
  let stats: CollectedPrefill["stats"] | undefined;
  let completedDigest: Uint8Array | undefined;
  let completedBytes = 0;
  for await (const event of events) {
    seen.push(event as PrefillEvent);
    if (completedDigest) throw new Error("an event followed `completed`");
    if (event.type === "accepted") {
      if (descriptor) throw new Error("a second `accepted`");
      descriptor = event.descriptor;
      kvHandle = "kvHandle" in event ? event.kvHandle : "";
      assembler = createKvAssembler(descriptor);
    } else if (event.type === "chunk") {
      if (!assembler) throw new Error("a chunk before `accepted`");
      const layer = assembler.accept(event.chunk);
      if (layer) layers.push(layer);
    } else if (event.type === "completed") {
      if (!assembler) throw new Error("`completed` before `accepted`");
      if ("stats" in event) {
        stats = event.stats;
        completedDigest = event.stats.kvDigest;
        completedBytes = event.stats.kvTotalBytes;
      } else {
        completedDigest = event.kvDigest;
        completedBytes = event.kvTotalBytes;
      }
    }
  }
  if (!descriptor || !assembler || !completedDigest)
    throw new Error("the stream ended without `completed`");
  assembler.assertComplete();
  const cache = fromKvParts(
    descriptor,
    layers.map((l) => l.parts),
  );
  expect(Buffer.from(digestKvCache(cache)).toString("hex")).toBe(
    Buffer.from(completedDigest).toString("hex"),
  );
  let total = 0;
  for (const layer of layers)
    for (const part of partsOf(descriptor)) total += layer.parts[part]!.byteLength;
  expect(total).toBe(completedBytes);
  return { events: seen, descriptor, kvHandle, layers, stats: stats! };
}
