import { randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  ftruncateSync,
  openSync,
  read,
  statfsSync,
  unlinkSync,
} from "node:fs";
import { promisify } from "node:util";
import { SHARED_MEMORY_DIRECTORY } from "@opal/protocol";

/** A region this process created in `/dev/shm` for a device to write a cache into (PF-43). */
export interface SharedMemoryRegion {
  /** The POSIX shared-memory name the request carries (`/opal-…`). */
  readonly name: string;
  /** Bytes the region offers from offset 0. */
  readonly lengthBytes: number;
  /** Fills `target` with the region's bytes from `offsetBytes` on (in the thread pool). */
  readInto(target: Uint8Array, offsetBytes: number): Promise<void>;
}

/** The regions of one device client: reused one prefill after another, removed on `close`. */
export interface SharedMemoryRegions {
  /** A free region, or a new one. */
  acquire(): SharedMemoryRegion;
  /**
   * Gives a region back. Only a region whose prefill completed is `reusable`: the device wrote
   * all it ever will. After a broken stream the device may still write, so the region is removed.
   */
  release(region: SharedMemoryRegion, reusable: boolean): void;
  /** Removes every region; idempotent. */
  close(): void;
}

/** Whether this host has POSIX shared memory where devices look for it. */
export function hasSharedMemory(): boolean {
  return process.platform === "linux" && existsSync(SHARED_MEMORY_DIRECTORY);
}

const readAt = promisify(read) as unknown as (
  fd: number,
  buffer: Uint8Array,
  offset: number,
  length: number,
  position: number,
) => Promise<number>;

/** Regions kept for reuse beyond those in use; more are removed when released. */
const IDLE_REGIONS = 2;
/** Files of every live region of this process, removed at exit if nobody closed their client. */
const live = new Set<string>();
let exitHookInstalled = false;

/**
 * Creates the region set of a device client. Each region is a file `/dev/shm/opal-<pid>-<random>`
 * created exclusively with mode 0600 and sized sparsely to `regionBytes` (default: what the shared
 * memory file system has free when the region is created), so it costs memory only where the
 * device writes. Regions are kept for the next prefill (a device writes twice as fast into pages
 * it wrote before) and removed by `close` or at process exit; a process killed outright leaves its
 * files behind (`rm /dev/shm/opal-<pid>-*`).
 */
export function createSharedMemoryRegions(
  options: { regionBytes?: number } = {},
): SharedMemoryRegions {
  const idle: Region[] = [];
  const all = new Set<Region>();
  const remove = (region: Region) => {
    all.delete(region);
    live.delete(region.path);
    closeSync(region.fd);
    try {
      unlinkSync(region.path);
    } catch {
      // Already gone: nothing to remove.
    }
  };
  return {
    acquire() {
      const reused = idle.pop();
      if (reused) return reused;
      const region = createRegion(options.regionBytes);
      all.add(region);
      return region;
    },
    release(region, reusable) {
      const own = region as Region;
      if (!all.has(own)) return;
      if (reusable && idle.length < IDLE_REGIONS) idle.push(own);
      else remove(own);
    },
    close() {
      idle.length = 0;
      for (const region of [...all]) remove(region);
    },
  };
}

interface Region extends SharedMemoryRegion {
  readonly path: string;
  readonly fd: number;
}

function createRegion(regionBytes: number | undefined): Region {
  const base = `opal-${process.pid}-${randomBytes(12).toString("hex")}`;
  const path = `${SHARED_MEMORY_DIRECTORY}/${base}`;
  const fd = openSync(path, "wx+", 0o600);
  live.add(path);
  installExitHook();
  let lengthBytes: number;
  try {
    const free = statfsSync(SHARED_MEMORY_DIRECTORY);
    lengthBytes = regionBytes ?? free.bavail * free.bsize;
    ftruncateSync(fd, lengthBytes);
  } catch (error) {
    live.delete(path);
    closeSync(fd);
    unlinkSync(path);
    throw error;
  }
  return {
    name: `/${base}`,
    path,
    fd,
    lengthBytes,
    async readInto(target, offsetBytes) {
      for (let done = 0; done < target.byteLength; ) {
        const n = await readAt(fd, target, done, target.byteLength - done, offsetBytes + done);
        if (n === 0) throw new RangeError(`region ${base} ends before byte ${offsetBytes + done}`);
        done += n;
      }
    },
  };
}

function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const path of live) {
      try {
        unlinkSync(path);
      } catch {
        // Already gone.
      }
    }
  });
}
