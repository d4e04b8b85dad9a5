import { randomBytes } from "node:crypto";
import { type FileHandle, open, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { assertFreeOutput, missingDirectory, publishFile } from "./publish-output";

/**
 * A file written under `<path>.partial-<random>` and made visible at `path` only by `commit`
 * (fsync, close, publish, fsync of the folder). `discard` closes and deletes the temporary file.
 */
export interface AtomicFile {
  /** The temporary path being written. */
  readonly partialPath: string;
  /** Bytes written so far (the end of the furthest write). */
  readonly byteLength: number;
  /** Appends `bytes` (or writes them at `position`); resolves once the OS took all of them. */
  write(bytes: Uint8Array, position?: number): Promise<void>;
  /**
   * fsync + publish at the final path (see `createAtomicFile`); resolves with the file's byte
   * length. On ALREADY_EXISTS the temporary file is deleted.
   */
  commit(): Promise<number>;
  /** Closes and deletes the temporary file; never throws. */
  discard(): Promise<void>;
}

/** A random suffix for temporary names (12 hex digits). */
export function partialSuffix(): string {
  return `.partial-${randomBytes(6).toString("hex")}`;
}

/**
 * Creates the temporary file exclusively (`wx`: `O_CREAT | O_EXCL`, so never through an existing
 * entry or symbolic link) under a random name next to `path`. The folder of `path` must exist (it
 * is not created): otherwise FAILED_PRECONDITION naming the folder, and nothing is written.
 * Unless `replace`, `path` must be free (absent, an empty file or an empty folder): ALREADY_EXISTS
 * here and, atomically, at `commit` (nothing OPAL did not create is ever replaced or deleted). With
 * `replace`, `commit` renames over `path` (atomic replacement). Other file-system errors are thrown
 * as Node reports them.
 */
export async function createAtomicFile(
  path: string,
  options: { readonly replace?: boolean } = {},
): Promise<AtomicFile> {
  const replace = options.replace ?? false;
  await assertFreeOutput(path, replace).catch((error: unknown) => {
    throw missingDirectory(path, error) ?? error;
  });
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
      try {
        await publishFile(partialPath, path, replace);
      } catch (error) {
        await rm(partialPath, { force: true }).catch(() => {});
        throw error;
      }
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

/**
 * Writes `bytes` as the file `path`, all or nothing, through {@link createAtomicFile}: a temporary
 * file created exclusively under a random name in `path`'s folder (which must exist), fsynced and
 * published; ALREADY_EXISTS for an existing non-empty `path` unless `replace`. On failure the
 * temporary file is deleted and `path` is as before. Resolves with the byte length.
 */
export async function writeAtomicFile(
  path: string,
  bytes: Uint8Array,
  options: { readonly replace?: boolean } = {},
): Promise<number> {
  const file = await createAtomicFile(path, options);
  try {
    await file.write(bytes);
    return await file.commit();
  } catch (error) {
    await file.discard();
    throw error;
  }
}
