import { constants, type FileHandle, open } from "node:fs/promises";
import { Code, OpalError, Reason } from "@opal/core";
import type { PrefillEvent } from "@opal/driver";
import type { KvChunk } from "@opal/kv";
import { cacheByteLength } from "@opal/kv";
import { type opal, sharedMemoryPath } from "@opal/protocol";

/** A caller's shared-memory region as a prefill request offers it (PF-43). */
export type SharedMemoryOffer = opal.device.v1.SharedMemoryRegion.$Properties;

/** Where a chunk's bytes are in the region (`KvChunk.data_ref`). */
export interface DataRef {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/** A prefill event as the host sends it: a chunk may carry its bytes by reference. */
export type HostPrefillEvent =
  | PrefillEvent
  | { readonly type: "chunk"; readonly chunk: KvChunk; readonly dataRef: DataRef };

/** An opened region: the caller's file, checked, ready to take the cache. */
export interface SharedMemoryRegion {
  readonly name: string;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly handle: FileHandle;
}

const NAME = "data_plane.shared_memory.name";
const LENGTH = "data_plane.shared_memory.length_bytes";
const EMPTY = new Uint8Array(0);

/**
 * Opens the region a prefill offers (PF-43), before the driver runs. The host never creates a
 * region: the file must exist, be a regular file (symbolic links are not followed) owned by this
 * process's user, and hold `offset_bytes + length_bytes` bytes. Any failure is INVALID_ARGUMENT
 * INVALID_FIELD naming `data_plane.shared_memory.name` (cannot open) or `.length_bytes` (too small).
 */
export async function openSharedMemoryRegion(
  offer: SharedMemoryOffer,
): Promise<SharedMemoryRegion> {
  const name = offer.name ?? "";
  const path = sharedMemoryPath(name);
  const offsetBytes = Number(offer.offsetBytes ?? 0);
  const lengthBytes = Number(offer.lengthBytes ?? 0);
  if (lengthBytes <= 0) throw invalid(LENGTH, `expected a positive length, got ${lengthBytes}`);
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDWR | constants.O_NOFOLLOW);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    throw invalid(NAME, `cannot open the region ${JSON.stringify(name)} on this host (${code})`);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw invalid(NAME, `${JSON.stringify(name)} is not a regular file`);
    const uid = process.getuid?.();
    if (uid !== undefined && stat.uid !== uid) {
      throw invalid(NAME, `${JSON.stringify(name)} belongs to another user`);
    }
    if (stat.size < offsetBytes + lengthBytes) {
      throw invalid(
        LENGTH,
        `the region ${JSON.stringify(name)} holds ${stat.size} bytes, the offer claims ${lengthBytes} from offset ${offsetBytes}`,
      );
    }
    return { name, offsetBytes, lengthBytes, handle };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/**
 * Carries a prefill's KV bytes through `region` (PF-42, PF-43): each chunk's bytes are written at
 * the region's offset plus the chunk's canonical offset, and the chunk goes on with empty data and a
 * `dataRef`; a chunk is passed on only after its bytes are written (a `pwrite` to shared memory is
 * visible to the caller once it returns). Rejects a cache larger than the region at `accepted`
 * (INVALID_ARGUMENT INVALID_FIELD on `length_bytes`). Closes the region when the stream ends.
 */
export async function* writeThroughRegion(
  events: AsyncIterable<PrefillEvent>,
  region: SharedMemoryRegion,
): AsyncGenerator<HostPrefillEvent> {
  // Prefill streams the whole cache in canonical order, so the canonical offset is the running sum.
  let canonicalBytes = 0;
  try {
    for await (const event of events) {
      if (event.type === "accepted") {
        const total = cacheByteLength(event.descriptor);
        if (total > region.lengthBytes) {
          throw invalid(
            LENGTH,
            `the cache takes ${total} bytes, the region offers ${region.lengthBytes}`,
          );
        }
      }
      if (event.type !== "chunk") {
        yield event;
        continue;
      }
      const { data } = event.chunk;
      const offsetBytes = region.offsetBytes + canonicalBytes;
      await writeAll(region, data, offsetBytes);
      canonicalBytes += data.byteLength;
      yield {
        type: "chunk",
        chunk: { ...event.chunk, data: EMPTY },
        dataRef: { offsetBytes, lengthBytes: data.byteLength },
      };
    }
  } finally {
    await region.handle.close();
  }
}

async function writeAll(region: SharedMemoryRegion, data: Uint8Array, position: number) {
  try {
    for (let written = 0; written < data.byteLength; ) {
      const { bytesWritten } = await region.handle.write(
        data,
        written,
        data.byteLength - written,
        position + written,
      );
      written += bytesWritten;
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    throw new OpalError(
      Code.UNAVAILABLE,
      `writing the shared-memory region ${JSON.stringify(region.name)} failed (${code})`,
      { reason: Reason.DEVICE_FAULT, cause: error },
    );
  }
}

function invalid(field: string, description: string): OpalError {
  return new OpalError(Code.INVALID_ARGUMENT, `${field}: ${description}`, {
    reason: Reason.INVALID_FIELD,
    fieldViolations: [{ field, description }],
  });
}
