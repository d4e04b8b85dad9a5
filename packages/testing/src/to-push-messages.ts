import type { KvDescriptor } from "@opal/kv";
import { toWireChunk, toWireDescriptor } from "@opal/protocol";
import type { CollectedPrefill } from "./collect-prefill";
import type { PushRequest } from "./open-push";

/** A real cache as the messages of a push, in the order a device sends them. */
export interface PushMessages {
  readonly header: PushRequest;
  readonly chunks: readonly PushRequest[];
  readonly commit: PushRequest;
  readonly descriptor: KvDescriptor;
}

/**
 * The PushKv messages (header, one per chunk, commit with the total and digest) that push the
 * collected prefill's cache as `transferId` of `requestId`.
 */
export function toPushMessages(
  prefill: CollectedPrefill,
  transferId: string,
  requestId: string,
): PushMessages {
  const { events, descriptor, stats } = prefill;
  return {
    header: { header: { transferId, requestId, descriptor: toWireDescriptor(descriptor) } },
    chunks: events.flatMap((e) => (e.type === "chunk" ? [{ chunk: toWireChunk(e.chunk) }] : [])),
    commit: { commit: { kvTotalBytes: stats.kvTotalBytes, kvDigest: stats.kvDigest } },
    descriptor,
  };
}
