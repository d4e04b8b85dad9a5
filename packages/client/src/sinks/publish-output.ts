import { randomBytes } from "node:crypto";
import { link, lstat, mkdir, open, readdir, rename, rm, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Code, OpalError } from "@opal/core";

/**
 * ALREADY_EXISTS: `path` holds something OPAL would have to delete to write its output, and the
 * caller did not ask for replacement (`replace: true`, `--force` in the CLI).
 */
export function outputExists(path: string): OpalError {
  return new OpalError(
    Code.ALREADY_EXISTS,
    `${path} already exists and is not empty (expected a new path, an empty file or an empty folder; pass replace: true, or --force to opal, to replace it)`,
  );
}

/**
 * Whether `path` is free for a new output: absent, an empty regular file or an empty folder. A
 * symbolic link (even to an empty file) or any other kind of entry is not free; `lstat` is used, so
 * links are never followed.
 */
export async function isFreeOutput(path: string): Promise<boolean> {
  const stats = await lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw error;
  });
  if (stats === undefined) return true;
  if (stats.isFile()) return stats.size === 0;
  if (stats.isDirectory()) return (await readdir(path)).length === 0;
  return false;
}

/** Throws {@link outputExists} unless `replace` or `path` {@link isFreeOutput is free}. */
export async function assertFreeOutput(path: string, replace: boolean): Promise<void> {
  if (!replace && !(await isFreeOutput(path))) throw outputExists(path);
}

/**
 * Makes the finished temporary file `partial` (created by OPAL in `path`'s folder) visible at
 * `path`. `replace`: `rename`, which atomically replaces whatever entry `path` names (a symbolic
 * link itself, never its target). Otherwise `link` + `unlink`, which fails atomically when `path`
 * exists: only an empty regular file is then replaced; anything else is left untouched and
 * ALREADY_EXISTS is thrown (the caller discards `partial`). On a file system without hard links,
 * `path` is checked and then renamed over.
 */
export async function publishFile(partial: string, path: string, replace: boolean): Promise<void> {
  if (replace) {
    await rename(partial, path);
    return;
  }
  try {
    await link(partial, path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EPERM" || code === "ENOTSUP" || code === "EOPNOTSUPP" || code === "EMLINK") {
      // A file system without hard links: check, then rename (not atomic against a racing writer).
      if (!(await isFreeOutput(path))) throw outputExists(path);
      await rename(partial, path);
      return;
    }
    if (code !== "EEXIST") throw error;
    const stats = await lstat(path);
    if (!stats.isFile() || stats.size !== 0) throw outputExists(path);
    await rename(partial, path);
    return;
  }
  await unlink(partial);
}

/**
 * Makes the finished temporary folder `partial` (created by OPAL next to `folder`) visible at
 * `folder` with one `rename`, which the OS refuses when `folder` is a non-empty folder or not a
 * folder: then ALREADY_EXISTS, `folder` untouched. With `replace`, an existing `folder` is first
 * renamed aside to a random sibling name, the new one renamed in, and only then the old one deleted:
 * at no moment does `folder` hold a mix of both.
 */
export async function publishFolder(
  partial: string,
  folder: string,
  replace: boolean,
): Promise<void> {
  try {
    await rename(partial, folder);
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "ENOTDIR" && code !== "EISDIR")
      throw error;
    if (!replace) throw outputExists(folder);
  }
  const aside = `${folder}.old-${randomBytes(6).toString("hex")}`;
  await rename(folder, aside);
  await rename(partial, folder);
  await rm(aside, { recursive: true, force: true });
}

/**
 * FAILED_PRECONDITION when opening a file next to `path` failed because its folder does not exist
 * (ENOENT) or a component of it is not a folder (ENOTDIR); `undefined` for any other error.
 */
export function missingDirectory(path: string, error: unknown): OpalError | undefined {
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

/**
 * Writes `files` (name → bytes, plain names without separators) as the folder `folder`, all or
 * nothing: into a sibling `<folder>.partial-<random>` that `mkdir` creates exclusively, each file
 * created exclusively (`wx`) and fsynced, then published by {@link publishFolder} (ALREADY_EXISTS
 * for an existing non-empty `folder` unless `replace`). On any failure the temporary folder is
 * deleted and `folder` is as before. The parent folder must exist.
 */
export async function writeAtomicFolder(
  folder: string,
  files: ReadonlyArray<readonly [string, Uint8Array | string]>,
  options: { readonly replace?: boolean } = {},
): Promise<void> {
  const replace = options.replace ?? false;
  await assertFreeOutput(folder, replace);
  const partial = `${folder}.partial-${randomBytes(6).toString("hex")}`;
  await mkdir(partial).catch((error: unknown) => {
    throw missingDirectory(folder, error) ?? error;
  });
  try {
    for (const [name, bytes] of files) {
      if (!/^[\w.-]+$/.test(name) || name === "." || name === "..")
        throw new OpalError(Code.INVALID_ARGUMENT, `${name}: expected a plain file name`);
      const handle = await open(join(partial, name), "wx");
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    await publishFolder(partial, folder, replace);
  } catch (error) {
    await rm(partial, { recursive: true, force: true });
    throw error;
  }
}
