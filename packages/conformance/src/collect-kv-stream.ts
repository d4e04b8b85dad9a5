import type { OpalError } from "@opal/core";
import { createKvDigest, type KvDescriptor, type KvPart, toHex } from "@opal/kv";
import type { opal } from "@opal/protocol";
import {
  addViolation,
  createKvStreamState,
  type KvRegion,
  readKvStreamMessage,
  type StreamStart,
} from "./kv-stream-state";
import type { WireStream } from "./wire-client";
import { toWireStatus, type WireStatus } from "./wire-status";

type PrefillResponse = opal.device.v1.PrefillResponse;
type FetchKvResponse = opal.device.v1.FetchKvResponse;

/** Options of {@link collectKvStream}. */
export interface CollectKvOptions {
  /** Largest chunk allowed (`PF-14`), in bytes. */
  readonly chunkBytes: number;
  /** Position of the first chunk (`FetchKv` resume); default the start of the cache. */
  readonly start?: StreamStart;
  /**
   * The shared-memory region the request offered (PF-43): chunks must then carry `data_ref` at
   * the region's offset plus their canonical offset, and their bytes are read from it.
   */
  readonly region?: KvRegion;
}

/** Everything a KV stream delivered, and every rule it broke. */
export interface CollectedKv {
  readonly accepted?: opal.device.v1.IPrefillAccepted & opal.device.v1.IFetchKvAccepted;
  /** The descriptor, when `accepted` carried a valid one. */
  readonly descriptor?: KvDescriptor;
  readonly completed?: opal.device.v1.IPrefillCompleted & opal.device.v1.IFetchKvCompleted;
  readonly pushProgress: readonly opal.device.v1.IPushProgress[];
  /** Received bytes per layer and part (zero-filled before the start position). */
  readonly parts: readonly Partial<Record<KvPart, Uint8Array>>[];
  readonly chunkCount: number;
  /** Chunk bytes received. */
  readonly receivedBytes: number;
  /** Lower-case hex whole-cache digest (XXH3-128) of all parts in canonical order (meaningful when complete). */
  readonly digestHex: string;
  /** Rule violations, each prefixed with the requirement id. */
  readonly violations: readonly string[];
  /** The call's failure, if it did not end with OK. */
  readonly error?: OpalError;
  readonly status?: WireStatus;
  /** Messages received in total. */
  readonly messageCount: number;
}

/**
 * Reads a `Prefill` or `FetchKv` stream to its end and checks the stream rules as it goes:
 * one `accepted` first (`PF-10`), chunks in canonical order with contiguous offsets covering each
 * part (`PF-13`), within the chunk size (`PF-14`), with valid CRC32C (`PF-15`), inline data only
 * unless a shared-memory `region` was offered (`PF-42`, `PF-43`),
 * exactly one `completed` last, nothing after it (`PF-10`, `PF-17`), and a stream that ends OK
 * only after `completed` (`PF-26`). Never throws for a device failure: it is in `error`.
 */
export async function collectKvStream(
  stream: WireStream<PrefillResponse | FetchKvResponse>,
  options: CollectKvOptions,
): Promise<CollectedKv> {
  const state = createKvStreamState(options);
  let error: OpalError | undefined;
  try {
    for await (const message of stream) readKvStreamMessage(state, message);
    if (!state.completed)
      addViolation(state, "PF-26: the stream ended with OK but without `completed`");
  } catch (cause) {
    error = cause as OpalError;
  }
  const digest = createKvDigest();
  for (const layerParts of state.parts)
    for (const part of state.order) digest.update(layerParts[part]!);
  const status = error ? toWireStatus(error) : undefined;
  return {
    ...(state.accepted ? { accepted: state.accepted } : {}),
    ...(state.descriptor ? { descriptor: state.descriptor } : {}),
    ...(state.completed ? { completed: state.completed } : {}),
    ...(error ? { error } : {}),
    ...(status ? { status } : {}),
    pushProgress: state.pushProgress,
    parts: state.parts,
    chunkCount: state.chunkCount,
    receivedBytes: state.receivedBytes,
    digestHex: toHex(digest.digest()),
    violations: state.violations,
    messageCount: state.messageCount,
  };
}
