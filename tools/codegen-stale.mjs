// What `node tools/codegen.mjs --check` reports: the generated files that differ from what is
// committed, and the files in the generated folders that the generator no longer produces.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

/**
 * The paths (relative to `root`, `/`-separated) that are not as `files` says: a generated file
 * missing or different, or a file under one of `genDirs` (folders the generator owns entirely)
 * that is not in `files`. Empty when the committed code is up to date.
 */
export function staleFiles(root, files, genDirs) {
  const differ = Object.entries(files)
    .filter(
      ([path, text]) =>
        !existsSync(join(root, path)) || readFileSync(join(root, path), "utf8") !== text,
    )
    .map(([path]) => path);
  const leftover = genDirs
    .filter((dir) => existsSync(join(root, dir)))
    .flatMap((dir) =>
      readdirSync(join(root, dir), { recursive: true }).map(
        (name) => `${dir}/${name.replaceAll("\\", "/")}`,
      ),
    )
    .filter((path) => !(path in files) && !statSync(join(root, path)).isDirectory())
    .sort();
  return [...differ, ...leftover];
}
