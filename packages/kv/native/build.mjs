// Builds the CRC32C addon (crc32c.c) into native/build/crc32c.node with the system C compiler and
// the headers of the running Node. Needs no node-gyp: a Node-API module links against nothing.
// When there is no compiler or no headers it says so and exits 0: @opal/kv then uses
// @node-rs/crc32 (same results, about a quarter of the speed).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const output = join(here, "build", "crc32c.node");
const candidates = [
  process.env.OPAL_NODE_INCLUDE,
  join(dirname(dirname(process.execPath)), "include", "node"),
  join(process.env.HOME ?? "", ".cache", "node-gyp", process.versions.node, "include", "node"),
].filter(Boolean);
const include = candidates.find((dir) => existsSync(join(dir, "node_api.h")));
const skip = (why) => {
  console.warn(`@opal/kv: native CRC32C not built (${why}); using @node-rs/crc32`);
  process.exit(0);
};
if (process.arch !== "x64") skip(`${process.arch} is not x86-64`);
if (!include) skip(`node_api.h not found in ${candidates.join(", ")}`);
// A failed build must not leave an older addon behind.
rmSync(output, { force: true });
mkdirSync(dirname(output), { recursive: true });
const cc = process.env.CC ?? "cc";
// Node-API symbols resolve when Node loads the addon; macOS's linker must be told so.
const platformFlags = process.platform === "darwin" ? ["-undefined", "dynamic_lookup"] : [];
const result = spawnSync(
  cc,
  [
    "-O3",
    "-shared",
    "-fPIC",
    "-Wall",
    ...platformFlags,
    `-I${include}`,
    join(here, "crc32c.c"),
    "-o",
    output,
  ],
  { encoding: "utf8" },
);
if (result.error) skip(`${cc}: ${result.error.message}`);
if (result.status !== 0) skip(`${cc} failed: ${result.stderr.trim()}`);
