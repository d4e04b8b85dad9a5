import { randomBytes } from "node:crypto";
import { type FileHandle, open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { Code, OpalError } from "@opal/core";

/**
 * A file written under `<path>.partial-<random>` and made visible at `path` only by `commit`
 * (fsync, close, rename, fsync of the folder). `discard` closes and deletes the temporary file.
 */
export interface AtomicFile {
  /** The temporary path being written. */
  readonly partialPath: string;
  /** Bytes written so far (the end of the furthest write). */
  readonly byteLength: number;
  /** Appends `bytes` (or writes them at `position`); resolves once the OS took all of them. */
  write(bytes: Uint8Array, position?: number): Promise<void>;
  /** fsync + rename to the final path; resolves with the file's byte length. */
  commit(): Promise<number>;
  /** Closes and deletes the temporary file; never throws. */
  discard(): Promise<void>;
}

/** A random suffix for temporary names (12 hex digits). */
export function partialSuffix(): string {
  return `.partial-${randomBytes(6).toString("hex")}`;
}

/**
 * Creates the temporary file exclusively (`wx`) next to `path`. The folder of `path` must exist (it
 * is not created): otherwise FAILED_PRECONDITION naming the folder, and nothing is written. Other
 * file-system errors are thrown as Node reports them.
 */
export async function createAtomicFile(path: string): Promise<AtomicFile> {
  const partialPath = `${path}${partialSuffix()}`;
  let handle: FileHandle | undefined = await open(partialPath, "wx").catch((error: unknown) => {
    throw missingDirectory(path, error) ?? error;
  });
  let end = 0;
  let closed = false;
  return {
    partialPath,
    get byteLength() {
      return end;
    },
    async write(bytes, position = end) {
      if (!handle) throw new Error(`${partialPath} is closed`);
      let done = 0;
      while (done < bytes.byteLength) {
        const { bytesWritten } = await handle.write(
          bytes,
          done,
          bytes.byteLength - done,
          position + done,
        );
        done += bytesWritten;
      }
      end = Math.max(end, position + bytes.byteLength);
    },
    async commit() {
      if (!handle) throw new Error(`${partialPath} is closed`);
      await handle.sync();
      await handle.close();
      handle = undefined;
      closed = true;
      await rename(partialPath, path);
      await syncDirectory(dirname(path));
      return end;
    },
    async discard() {
      try {
        if (handle && !closed) await handle.close();
      } catch {
        // already closed or failing disk: removing the file below is what matters.
      }
      handle = undefined;
      await rm(partialPath, { force: true }).catch(() => {});
    },
  };
}

/**
 * FAILED_PRECONDITION when opening a file next to `path` failed because its folder does not exist
 * (ENOENT) or a component of it is not a folder (ENOTDIR); `undefined` for any other error.
 */
function missingDirectory(path: string, error: unknown): OpalError | undefined {
  const errno = (error as { code?: unknown } | null)?.code;
  const directory = dirname(path);
  const problem =
    errno === "ENOENT" ? "does not exist" : errno === "ENOTDIR" ? "is not a directory" : undefined;
  if (problem === undefined) return undefined;
  return new OpalError(
    Code.FAILED_PRECONDITION,
    `cannot write ${path}: its directory ${directory} ${problem} (expected an existing directory; create it first)`,
    { cause: error },
  );
}

/** fsync of a folder so a rename survives a crash; ignored where folders cannot be opened (Windows). */
export async function syncDirectory(directory: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(directory, "r");
    await handle.sync();
  } catch {
    // best effort
  } finally {
    await handle?.close().catch(() => {});
  }
}
