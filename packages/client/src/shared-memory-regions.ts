import { randomBytes } from "node:crypto";
import {
  closeSync,
  ftruncateSync,
  lstatSync,
  openSync,
  read,
  readdirSync,
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
  /**
   * A region of at least `bytes` bytes: a free one (grown if needed) or a new one; undefined when
   * `/dev/shm` has not that much free (the call then goes inline). Throws when no region can be
   * created (the file system refuses).
   */
  acquire(bytes: number): SharedMemoryRegion | undefined;
  /**
   * Gives a region back. Only a region whose prefill completed is `reusable`: the device wrote
   * all it ever will. After a broken stream the device may still write, so the region is removed.
   */
  release(region: SharedMemoryRegion, reusable: boolean): void;
  /** Removes every free region now and every region in use when it is released; idempotent. */
  close(): void;
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
 * created exclusively with mode 0600 and sized (sparsely) to the cache it is for, and only when
 * the shared-memory file system has that much free. A region is kept for the next prefill (a
 * device writes twice as fast into pages it wrote before; it grows when a larger cache needs it),
 * up to two free ones, and removed by `close` or at process exit. A process killed outright leaves
 * its files behind: a region set's first region removes those of this user's dead processes.
 */
export function createSharedMemoryRegions(): SharedMemoryRegions {
  const idle: Region[] = [];
  const inUse = new Set<Region>();
  let closed = false;
  let swept = false;
  const remove = (region: Region) => {
    live.delete(region.path);
    closeSync(region.fd);
    try {
      unlinkSync(region.path);
    } catch {
      // Already gone: nothing to remove.
    }
  };
  return {
    acquire(bytes) {
      if (closed) return undefined;
      if (!swept) {
        swept = true;
        removeRegionsOfDeadProcesses();
      }
      const reused = idle.pop();
      const grow = reused ? bytes - reused.lengthBytes : bytes;
      if (grow > 0 && freeBytes() < grow) {
        if (reused) idle.push(reused);
        return undefined;
      }
      const region = reused ?? createRegion();
      try {
        if (region.lengthBytes < bytes) {
          ftruncateSync(region.fd, bytes);
          region.lengthBytes = bytes;
        }
      } catch (error) {
        remove(region);
        throw error;
      }
      inUse.add(region);
      return region;
    },
    release(region, reusable) {
      const own = region as Region;
      if (!inUse.delete(own)) return;
      if (reusable && !closed && idle.length < IDLE_REGIONS) idle.push(own);
      else remove(own);
    },
    close() {
      closed = true;
      for (const region of idle.splice(0)) remove(region);
    },
  };
}

interface Region extends SharedMemoryRegion {
  readonly path: string;
  readonly fd: number;
  lengthBytes: number;
}

function freeBytes(): number {
  const stats = statfsSync(SHARED_MEMORY_DIRECTORY);
  return stats.bavail * stats.bsize;
}

function createRegion(): Region {
  const base = `opal-${process.pid}-${randomBytes(12).toString("hex")}`;
  const path = `${SHARED_MEMORY_DIRECTORY}/${base}`;
  const fd = openSync(path, "wx+", 0o600);
  live.add(path);
  installExitHook();
  return {
    name: `/${base}`,
    path,
    fd,
    lengthBytes: 0,
    async readInto(target, offsetBytes) {
      for (let done = 0; done < target.byteLength; ) {
        const n = await readAt(fd, target, done, target.byteLength - done, offsetBytes + done);
        if (n === 0) throw new RangeError(`region ${base} ends before byte ${offsetBytes + done}`);
        done += n;
      }
    },
  };
}

/** Removes region files left by this user's processes that no longer run (killed outright). */
function removeRegionsOfDeadProcesses() {
  const uid = process.getuid?.();
  for (const name of readdirSync(SHARED_MEMORY_DIRECTORY)) {
    const pid = Number(/^opal-(\d+)-[0-9a-f]{24}$/.exec(name)?.[1]);
    if (!pid || pid === process.pid || isRunning(pid)) continue;
    const path = `${SHARED_MEMORY_DIRECTORY}/${name}`;
    try {
      const stat = lstatSync(path);
      if (stat.isFile() && stat.uid === uid) unlinkSync(path);
    } catch {
      // Gone meanwhile, or not ours to remove.
    }
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
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
