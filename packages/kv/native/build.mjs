// Builds this package's Node-API addons with the system C compiler and the headers of the running
// Node, needing no node-gyp (a Node-API module links against nothing):
// - crc32c.c into native/build/crc32c.node (x86-64; otherwise @opal/kv uses @node-rs/crc32, same
//   results, about a quarter of the speed);
// - large-memory.c into native/build/large-memory.node (huge-page cache memory on Linux; otherwise
//   @opal/kv allocates ordinary buffers);
// - file-lock.c into native/build/file-lock.node (flock for shared-memory region liveness on Linux
//   and macOS; otherwise stale regions of killed processes are not swept).
// When there is no compiler or no headers it says so and exits 0: the fallbacks take over.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const candidates = [
  process.env.OPAL_NODE_INCLUDE,
  join(dirname(dirname(process.execPath)), "include", "node"),
  join(process.env.HOME ?? "", ".cache", "node-gyp", process.versions.node, "include", "node"),
].filter(Boolean);
const include = candidates.find((dir) => existsSync(join(dir, "node_api.h")));
const cc = process.env.CC ?? "cc";
// Node-API symbols resolve when Node loads the addon; macOS's linker must be told so.
const platformFlags = process.platform === "darwin" ? ["-undefined", "dynamic_lookup"] : [];

/** Builds native/<name>.c into native/build/<name>.node; returns why not, or undefined. */
function build(name) {
  const output = join(here, "build", `${name}.node`);
  // A failed build must not leave an older addon behind.
  rmSync(output, { force: true });
  if (!include) return `node_api.h not found in ${candidates.join(", ")}`;
  mkdirSync(dirname(output), { recursive: true });
  const result = spawnSync(
    cc,
    [
      "-O3",
      "-shared",
      "-fPIC",
      "-Wall",
      ...platformFlags,
      `-I${include}`,
      join(here, `${name}.c`),
      "-o",
      output,
    ],
    { encoding: "utf8" },
  );
  if (result.error) return `${cc}: ${result.error.message}`;
  if (result.status !== 0) return `${cc} failed: ${result.stderr.trim()}`;
  return undefined;
}

const crcSkipped = process.arch === "x64" ? build("crc32c") : `${process.arch} is not x86-64`;
if (crcSkipped)
  console.warn(`@opal/kv: native CRC32C not built (${crcSkipped}); using @node-rs/crc32`);
if (process.platform === "linux") {
  const memorySkipped = build("large-memory");
  if (memorySkipped) {
    console.warn(
      `@opal/kv: huge-page cache memory not built (${memorySkipped}); using ordinary buffers`,
    );
  }
}
if (process.platform === "linux" || process.platform === "darwin") {
  const lockSkipped = build("file-lock");
  if (lockSkipped) {
    console.warn(
      `@opal/kv: file locks not built (${lockSkipped}); stale shared-memory regions are not swept`,
    );
  }
}
