// Builds every package with nx (cached: only what changed is rebuilt), quietly; on failure prints
// how to see why and exits with the build's status. Used by `npm start` and `npm run bench`.
import { spawnSync } from "node:child_process";
import { join } from "node:path";

/** Builds the workspace rooted at `root`; `command` names the caller in the failure message. */
export function buildPackages(root, command) {
  const env = { ...process.env, NX_DAEMON: "false", NX_NO_CLOUD: "true", NX_TUI: "false" };
  const build = spawnSync(
    join(root, "node_modules/.bin/nx"),
    ["run-many", "-t", "build", "--outputStyle=static"],
    { cwd: root, stdio: ["ignore", "ignore", "inherit"], env },
  );
  if (build.status !== 0) {
    console.error(`${command}: the build failed; run \`npx nx run-many -t build\` to see why`);
    process.exit(build.status ?? 1);
  }
}
