import { constants, type FileHandle, open } from "node:fs/promises";
import { Code, invalidField, OpalError, Reason } from "@opal/core";
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
const SHARED_MEMORY_FULL = "the shared-memory file system is full";

/** Names the host opens: OPAL regions only, never another program's shared memory (PF-43 lets a device refuse a region). */
const NAME_PREFIX = "/opal-";
/** Errors that mean the region cannot be opened as named, rather than a host in trouble. */
const UNOPENABLE = new Set(["ENOENT", "EACCES", "EPERM", "ELOOP", "EISDIR", "ENXIO", "ENOTDIR"]);

/**
 * Opens the region a prefill offers (PF-43), before the driver runs. The host never creates a
 * region: the name must start with `/opal-`, the file must exist, be a regular file (symbolic
 * links are not followed) owned by this process's user with a single link (no hard link to
 * another file), and hold `offset_bytes + length_bytes`
 * bytes, and `length_bytes` must cover `leastBytes` (the smallest cache the request can produce).
 * Those failures are INVALID_ARGUMENT INVALID_FIELD naming `data_plane.shared_memory.name` or
 * `.length_bytes`; a host out of file descriptors or memory is RESOURCE_EXHAUSTED DEVICE_BUSY with
 * a retry delay.
 */
export async function openSharedMemoryRegion(
  offer: SharedMemoryOffer,
  leastBytes: number,
): Promise<SharedMemoryRegion> {
  const name = offer.name ?? "";
  const path = sharedMemoryPath(name);
  if (!name.startsWith(NAME_PREFIX)) {
    throw invalidField(
      NAME,
      `this host opens only regions named ${NAME_PREFIX}…, got ${JSON.stringify(name)}`,
    );
  }
  const offsetBytes = Number(offer.offsetBytes ?? 0);
  const lengthBytes = Number(offer.lengthBytes ?? 0);
  if (lengthBytes < leastBytes) {
    throw invalidField(
      LENGTH,
      `the cache takes at least ${leastBytes} bytes, the region offers ${lengthBytes}`,
    );
  }
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDWR | constants.O_NOFOLLOW);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    if (!UNOPENABLE.has(code)) {
      throw new OpalError(
        Code.RESOURCE_EXHAUSTED,
        `cannot open a shared-memory region now (${code})`,
        {
          reason: Reason.DEVICE_BUSY,
          retryDelayMs: 100,
          cause: error,
        },
      );
    }
    throw invalidField(
      NAME,
      `cannot open the region ${JSON.stringify(name)} on this host (${code})`,
    );
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw invalidField(NAME, `${JSON.stringify(name)} is not a regular file`);
    const uid = process.getuid?.();
    if (uid !== undefined && stat.uid !== uid) {
      throw invalidField(NAME, `${JSON.stringify(name)} belongs to another user`);
    }
    // A second name (a hard link, e.g. /opal-x made a link to another program's /dev/shm file)
    // means the file is not the caller's region alone: writing into it could write into that file.
    if (stat.nlink !== 1) {
      throw invalidField(
        NAME,
        `${JSON.stringify(name)} has ${stat.nlink} links, expected 1 (a region is one file of its own)`,
      );
    }
    if (stat.size < offsetBytes + lengthBytes) {
      throw invalidField(
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
 * (INVALID_ARGUMENT INVALID_FIELD on `length_bytes`). Closes the region when the stream ends,
 * however `start` (the driver's prefill) fails.
 */
export async function* writeThroughRegion(
  start: () => AsyncIterable<PrefillEvent>,
  region: SharedMemoryRegion,
): AsyncGenerator<HostPrefillEvent> {
  // Prefill streams the whole cache in canonical order, so the canonical offset is the running sum.
  let canonicalBytes = 0;
  try {
    for await (const event of start()) {
      if (event.type === "accepted") {
        const total = cacheByteLength(event.descriptor);
        if (total > region.lengthBytes) {
          throw invalidField(
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
      if (canonicalBytes + data.byteLength > region.lengthBytes) {
        // Only a driver that streams more than its descriptor says gets here.
        throw new OpalError(Code.INTERNAL, "the driver streamed more bytes than its cache holds", {
          reason: Reason.INTERNAL,
        });
      }
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
    const message = `writing the shared-memory region ${JSON.stringify(region.name)} failed (${code})`;
    // A region the shared-memory file system cannot back is the caller's to fix (a smaller
    // region, or inline): not a device fault to retry elsewhere.
    if (code === "ENOSPC" || code === "EFBIG") {
      throw new OpalError(Code.INVALID_ARGUMENT, `${message}: ${SHARED_MEMORY_FULL}`, {
        reason: Reason.INVALID_FIELD,
        fieldViolations: [{ field: LENGTH, description: SHARED_MEMORY_FULL }],
        cause: error,
      });
    }
    throw new OpalError(Code.UNAVAILABLE, message, { reason: Reason.DEVICE_FAULT, cause: error });
  }
}
