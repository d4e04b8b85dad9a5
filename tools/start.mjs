#!/usr/bin/env node
// `npm start`: builds what is not built yet (nx caches the rest), then runs the main job,
// `opal demo`, passing through any arguments (`npm start -- --prompt "..."`).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildPackages } from "./build-packages.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
buildPackages(root, "npm start");
const cli = join(root, "packages/cli/dist/opal.js");
if (!existsSync(cli)) {
  console.error("npm start: packages/cli is not built");
  process.exit(1);
}
const run = spawnSync(process.execPath, [cli, "demo", ...process.argv.slice(2)], {
  cwd: root,
  stdio: "inherit",
});
process.exit(run.status ?? 1);
