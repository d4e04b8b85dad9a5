import { createRequire } from "node:module";

type TryLockFile = (fd: number) => boolean;

/** This package's addon (`native/file-lock.c`), when built and usable here. */
function loadNative(): TryLockFile | undefined {
  try {
    // `src/` and `dist/` are both one level below the package root, next to `native/`.
    const load = createRequire(import.meta.url);
    return (load("../native/build/file-lock.node") as { tryLockFile?: TryLockFile }).tryLockFile;
  } catch {
    return undefined;
  }
}

const native = loadNative();

/**
 * Whether {@link tryLockFile} works here: this package's addon (`native/file-lock.c`, built on
 * Linux and macOS by `npm run build`) is loaded.
 */
export const FILE_LOCKS_AVAILABLE: boolean = native !== undefined;

/**
 * Takes an exclusive advisory lock on the open file `fd` without waiting (`flock(fd, LOCK_EX |
 * LOCK_NB)`): true when taken (or already held through this same open file), false when another
 * open file of the same inode holds it, in this process or any other, in any PID namespace. The
 * lock lasts until every descriptor of that open file is closed, so a process that ends, however
 * it ends, releases it. Throws an Error when {@link FILE_LOCKS_AVAILABLE} is false or the lock call
 * fails otherwise (e.g. EBADF).
 */
export function tryLockFile(fd: number): boolean {
  if (!native) throw new Error("tryLockFile: @opal/kv's file-lock addon is not built here");
  return native(fd);
}
