import type { OpalError } from "@opal/core";
import {
  crc32cOf,
  createKvDigest,
  type KvDescriptor,
  type KvPart,
  partByteLength,
  partsOf,
  toHex,
} from "@opal/kv";
import { fromWireDescriptor, type opal, partEnum } from "@opal/protocol";
import type { WireStream } from "./wire-client";
import { toWireStatus, type WireStatus } from "./wire-status";

type PrefillResponse = opal.device.v1.PrefillResponse;
type FetchKvResponse = opal.device.v1.FetchKvResponse;

/** A CRC32C as errors.md §6 writes it: `0x` and 8 lower-case hex digits. */
function hex32(value: number): string {
  return `0x${(value >>> 0).toString(16).padStart(8, "0")}`;
}

/** Where a stream starts: layer, index into the descriptor's parts, byte offset. */
export interface StreamStart {
  readonly layer: number;
  readonly partIndex: number;
  readonly offsetBytes: number;
}

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
  readonly region?: {
    readonly offsetBytes: number;
    read(offsetBytes: number, lengthBytes: number): Uint8Array;
  };
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
  const violations: string[] = [];
  let accepted: CollectedKv["accepted"];
  let descriptor: KvDescriptor | undefined;
  let completed: CollectedKv["completed"];
  const pushProgress: opal.device.v1.IPushProgress[] = [];
  const parts: Partial<Record<KvPart, Uint8Array>>[] = [];
  let order: readonly KvPart[] = [];
  let layer = options.start?.layer ?? 0;
  let partIndex = options.start?.partIndex ?? 0;
  let offset = options.start?.offsetBytes ?? 0;
  let chunkCount = 0;
  let receivedBytes = 0;
  let messageCount = 0;
  let error: OpalError | undefined;
  const violate = (text: string) => {
    if (violations.length < 20) violations.push(text);
  };
  const done = () => descriptor !== undefined && layer >= descriptor.numLayers;
  const advance = () => {
    if (!descriptor) return;
    while (
      layer < descriptor.numLayers &&
      offset >= partByteLength(descriptor, order[partIndex]!)
    ) {
      offset = 0;
      partIndex++;
      if (partIndex >= order.length) {
        partIndex = 0;
        layer++;
      }
    }
  };

  try {
    for await (const message of stream) {
      messageCount++;
      const event = (message as { event?: string }).event;
      if (completed) violate(`PF-10: a ${event ?? "message"} arrived after \`completed\``);
      if (event === "accepted") {
        if (accepted) {
          violate("PF-10: a second `accepted`");
          continue;
        }
        if (messageCount !== 1) violate("PF-10: `accepted` is not the first message");
        accepted = message.accepted as CollectedKv["accepted"];
        try {
          descriptor = fromWireDescriptor(accepted?.descriptor ?? {});
          order = partsOf(descriptor);
          for (let l = 0; l < descriptor.numLayers; l++) {
            const byPart: Partial<Record<KvPart, Uint8Array>> = {};
            for (const part of order)
              byPart[part] = new Uint8Array(partByteLength(descriptor, part));
            parts.push(byPart);
          }
          advance();
        } catch (cause) {
          violate(`PF-12: invalid descriptor in \`accepted\`: ${(cause as Error).message}`);
        }
      } else if (event === "chunk") {
        const chunk = message.chunk as opal.device.v1.IKvChunk;
        chunkCount++;
        if (!accepted) {
          violate("PF-10: a chunk before `accepted`");
          continue;
        }
        if (pushProgress.length > 0) violate("PF-10: chunks and push_progress in one stream");
        let data = chunk.data ?? new Uint8Array();
        if (options.region) {
          const ref = chunk.dataRef;
          if (!ref)
            violate(`PF-42: chunk ${chunkCount} has no \`data_ref\` on the shared-memory plane`);
          else {
            if (data.byteLength)
              violate(`PF-42: chunk ${chunkCount} has both \`data\` and \`data_ref\``);
            const at = Number(ref.offsetBytes ?? 0);
            const expectedAt = options.region.offsetBytes + receivedBytes;
            if (at !== expectedAt) {
              violate(
                `PF-43: chunk ${chunkCount} has data_ref.offset_bytes ${at}, expected ${expectedAt}`,
              );
            }
            data = options.region.read(at, Number(ref.lengthBytes ?? 0));
          }
        } else if (chunk.dataRef) violate("PF-42: `data_ref` set on the inline data plane");
        receivedBytes += data.byteLength;
        if (data.byteLength < 1 || data.byteLength > options.chunkBytes) {
          violate(
            `PF-14: chunk ${chunkCount} has ${data.byteLength} bytes (allowed 1..${options.chunkBytes})`,
          );
        }
        if (crc32cOf(data) >>> 0 !== (chunk.crc32c ?? 0) >>> 0) {
          violate(
            `PF-15: chunk ${chunkCount} (layer ${chunk.layer} part ${chunk.part} offset ${chunk.offsetBytes}) CRC32C ${hex32(chunk.crc32c ?? 0)} does not match its bytes (${hex32(crc32cOf(data))})`,
          );
        }
        if (!descriptor) continue;
        let part: KvPart | undefined;
        try {
          part = partEnum.fromWire(chunk.part, "part");
        } catch {
          part = undefined;
        }
        const expected = done()
          ? "the end of the cache"
          : `layer ${layer} part ${order[partIndex]} offset ${offset}`;
        if (
          done() ||
          chunk.layer !== layer ||
          part !== order[partIndex] ||
          Number(chunk.offsetBytes ?? 0) !== offset
        ) {
          violate(
            `PF-13: chunk ${chunkCount} at layer ${chunk.layer} part ${part ?? chunk.part} offset ${chunk.offsetBytes}, expected ${expected}`,
          );
          continue;
        }
        const target = parts[layer]![part as KvPart]!;
        if (offset + data.byteLength > target.byteLength) {
          violate(
            `PF-13: chunk ${chunkCount} overruns part ${part} of layer ${layer} (${target.byteLength} bytes)`,
          );
          continue;
        }
        target.set(data, offset);
        offset += data.byteLength;
        advance();
      } else if (event === "pushProgress") {
        if (chunkCount > 0) violate("PF-10: push_progress and chunks in one stream");
        pushProgress.push(
          (message as PrefillResponse).pushProgress as opal.device.v1.IPushProgress,
        );
      } else if (event === "completed") {
        if (completed) {
          violate("PF-10: a second `completed`");
          continue;
        }
        if (!accepted) violate("PF-10: `completed` before `accepted`");
        completed = message.completed as CollectedKv["completed"];
        if (descriptor && pushProgress.length === 0 && !done()) {
          violate(
            `PF-28: \`completed\` before the last chunk (next expected: layer ${layer} part ${order[partIndex]} offset ${offset})`,
          );
        }
      } else {
        violate(`GEN-4: a message with no known event (${JSON.stringify(event)})`);
      }
    }
    if (!completed) violate("PF-26: the stream ended with OK but without `completed`");
  } catch (cause) {
    error = cause as OpalError;
  }
  const digest = createKvDigest();
  for (const layerParts of parts) for (const part of order) digest.update(layerParts[part]!);
  const status = error ? toWireStatus(error) : undefined;
  return {
    ...(accepted ? { accepted } : {}),
    ...(descriptor ? { descriptor } : {}),
    ...(completed ? { completed } : {}),
    ...(error ? { error } : {}),
    ...(status ? { status } : {}),
    pushProgress,
    parts,
    chunkCount,
    receivedBytes,
    digestHex: toHex(digest.digest()),
    violations,
    messageCount,
  };
}
