#!/usr/bin/env node
// `npm start`: builds what is not built yet (nx caches the rest), then runs the main job,
// `opal demo`, passing through any arguments (`npm start -- --prompt "..."`).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const env = { ...process.env, NX_DAEMON: "false", NX_NO_CLOUD: "true", NX_TUI: "false" };
const build = spawnSync(
  join(root, "node_modules/.bin/nx"),
  ["run-many", "-t", "build", "--outputStyle=static"],
  { cwd: root, stdio: ["ignore", "ignore", "inherit"], env },
);
if (build.status !== 0) {
  console.error("npm start: the build failed; run `npx nx run-many -t build` to see why");
  process.exit(build.status ?? 1);
}
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
