import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  fstatSync,
  ftruncateSync,
  lstatSync,
  openSync,
  read,
  readdirSync,
  statfsSync,
  unlinkSync,
} from "node:fs";
import { promisify } from "node:util";
import { FILE_LOCKS_AVAILABLE, tryLockFile } from "@opal/kv";
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
 * the shared-memory file system has that much free. The process holds an exclusive advisory lock
 * (`flock`, `tryLockFile` of `@opal/kv`) on each of its regions for as long as it keeps it. A
 * region is kept for the next prefill (a device writes twice as fast into pages it wrote before;
 * it grows when a larger cache needs it) while it still has a single link, up to two free ones,
 * and removed by `close` or at process exit. A process killed outright leaves its files behind: a
 * region set's first region removes this user's regions whose lock nobody holds. Liveness is the
 * lock, never the PID in the name, so a process in another PID namespace sharing `/dev/shm` (a
 * sidecar) never removes a live region. Where the lock addon is not built, nothing is swept.
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
      let reused = idle.pop();
      if (reused && !singleLink(reused)) {
        // Someone linked our region elsewhere: it is no longer ours alone; start afresh.
        remove(reused);
        reused = undefined;
      }
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

/** The region's file still has only the name we gave it. */
function singleLink(region: Region): boolean {
  return fstatSync(region.fd).nlink === 1;
}

/**
 * Creates a region file exclusively and takes its lock. A sweep in another process may take the
 * lock between the two and remove the name: then the name no longer leads to our file, and we
 * start over with a new name.
 */
function createRegion(): Region {
  for (;;) {
    const base = `opal-${process.pid}-${randomBytes(12).toString("hex")}`;
    const path = `${SHARED_MEMORY_DIRECTORY}/${base}`;
    const fd = openSync(path, "wx+", 0o600);
    if (!FILE_LOCKS_AVAILABLE) return regionOf(base, path, fd);
    let locked: boolean;
    try {
      locked = tryLockFile(fd);
    } catch (error) {
      closeSync(fd);
      unlinkSync(path);
      throw error;
    }
    if (locked && namesFile(path, fd)) return regionOf(base, path, fd);
    closeSync(fd);
  }
}

/** `path` still leads to the open file `fd` (not removed or replaced meanwhile). */
function namesFile(path: string, fd: number): boolean {
  try {
    return lstatSync(path).ino === fstatSync(fd).ino;
  } catch {
    return false;
  }
}

function regionOf(base: string, path: string, fd: number): Region {
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

/**
 * Removes region files this user's processes left behind (killed outright): a region whose lock
 * nobody holds. Taking the lock ourselves proves the owner is gone in every PID namespace; we keep
 * it while removing the name, which is removed only if it still leads to the file we locked.
 * Anything but a regular file of this user with a single link is left alone.
 */
function removeRegionsOfDeadProcesses() {
  if (!FILE_LOCKS_AVAILABLE) return;
  const uid = process.getuid?.();
  for (const name of readdirSync(SHARED_MEMORY_DIRECTORY)) {
    if (!/^opal-\d+-[0-9a-f]{24}$/.test(name)) continue;
    const path = `${SHARED_MEMORY_DIRECTORY}/${name}`;
    let fd: number | undefined;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      const stat = fstatSync(fd);
      if (!stat.isFile() || stat.uid !== uid || stat.nlink !== 1) continue;
      if (!tryLockFile(fd)) continue; // its owner lives
      if (namesFile(path, fd)) unlinkSync(path);
    } catch {
      // Gone meanwhile, or not ours to open or remove.
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
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
