import { existsSync } from "node:fs";
import { invalidField } from "@opal/core";

/** Where POSIX shared-memory objects live on Linux: `shm_open("/x")` opens `/dev/shm/x`. */
export const SHARED_MEMORY_DIRECTORY = "/dev/shm";

/** Whether this host has POSIX shared memory where the shared-memory data plane looks for it. */
export function hasSharedMemory(): boolean {
  return process.platform === "linux" && existsSync(SHARED_MEMORY_DIRECTORY);
}

/**
 * The file of the shared-memory region `name` (PF-43): a POSIX shared-memory object name, `/`
 * followed by 1 to 255 characters from `[A-Za-z0-9._-]` (not `.` or `..`), which on Linux is the
 * file `/dev/shm/<name without the slash>`, the object `shm_open(3)` opens. Throws INVALID_ARGUMENT
 * INVALID_FIELD on `data_plane.shared_memory.name` for anything else, so a name can never reach
 * outside that directory.
 */
export function sharedMemoryPath(name: string): string {
  const base = name.slice(1);
  if (!name.startsWith("/") || !/^[A-Za-z0-9._-]{1,255}$/.test(base) || /^\.\.?$/.test(base)) {
    const description = `expected "/" and 1 to 255 characters of [A-Za-z0-9._-], got ${JSON.stringify(name)}`;
    throw invalidField("data_plane.shared_memory.name", description);
  }
  return `${SHARED_MEMORY_DIRECTORY}/${base}`;
}
