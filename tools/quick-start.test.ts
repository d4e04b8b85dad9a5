import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = fileURLToPath(new URL("..", import.meta.url));

describe("the README's Quick start", () => {
  it("names exactly the two commands, and `npm start` runs the demo to a match", async () => {
    const readme = readFileSync(`${root}README.md`, "utf8");
    expect(readme).toContain("npm ci && npm start");
    expect(readme).toContain("npm ci && npm test");
    // `npm test` is what .ci/run runs; here `npm start` (build when needed, then `opal demo`).
    const { stdout } = await run("npm", ["start", "--", "--model", "opal-tiny", "--tokens", "4"], {
      cwd: root,
      timeout: 240_000,
      env: { ...process.env, NX_DAEMON: "false", NX_NO_CLOUD: "true" },
    });
    expect(stdout).toMatch(/matches monolithic run\s+yes \(4 tokens\)/);
  }, 240_000);
});
