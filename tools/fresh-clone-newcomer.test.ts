import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

// What a newcomer does, on a fresh clone: the README's quick start, then every shell command of
// the guides and of the executables' READMEs, exactly as written, in order, from the clone's root.
// The clone is of this working tree (committed files plus uncommitted changes), installed with
// `npm ci` preferring the local npm cache. Differences from a person at a terminal, and only these:
// - `npm ci && npm test` is not run: `npm test` runs this test (CI runs it as .ci/run);
// - a command that serves a device (`npx opal-mock …`, `npx opal mock …`, the Python example
//   device) runs in the background
//   until the next one starts (a person stops the mock on 50051 before starting another there)
//   or its file ends, as the docs say to run it in its own terminal;
// - the documented port 50051 becomes a free port, since other processes on this host may hold it.

const root = fileURLToPath(new URL("..", import.meta.url));
/** The files whose ```sh blocks a newcomer runs, in the order the README leads to them. */
const DOCS = [
  "README.md",
  "docs/guides/mock.md",
  "docs/guides/conformance.md",
  "docs/guides/integrator.md",
  "docs/guides/vendor.md",
  "packages/mock/README.md",
  "packages/conformance/README.md",
  "packages/cli/README.md",
  "examples/python-device/README.md",
];
const NOT_RUN = new Set(["npm ci && npm test"]);
const SERVES =
  /^(npx (opal-mock|opal mock)|\/usr\/bin\/python3 examples\/python-device\/opal_device\.py)\b/;

/** The commands of a file's ```sh blocks: one per line, `\` continuations joined, comments kept. */
function shellCommands(markdown: string): string[] {
  const commands: string[] = [];
  for (const block of markdown.matchAll(/^```(?:sh|bash|shell)\n([\s\S]*?)^```$/gm)) {
    const lines = block[1]!.replace(/\\\n\s*/g, "").split("\n");
    for (const line of lines) {
      if (line.trim() !== "" && !line.trim().startsWith("#")) commands.push(line.trim());
    }
  }
  return commands;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

/** Clones the working tree: committed files, then tracked changes and untracked files on top. */
function cloneWorkingTree(into: string): void {
  execFileSync("git", ["clone", "--quiet", "--no-hardlinks", root, into]);
  const git = (...args: string[]) =>
    execFileSync("git", args, { cwd: root, encoding: "utf8" }).split("\0").filter(Boolean);
  for (const path of git("ls-files", "-z", "--modified", "--others", "--exclude-standard")) {
    mkdirSync(dirname(join(into, path)), { recursive: true });
    try {
      copyFileSync(join(root, path), join(into, path));
    } catch {
      rmSync(join(into, path), { force: true }); // deleted in the working tree
    }
  }
}

const scratch = mkdtempSync(join(tmpdir(), "opal-newcomer-"));
const clone = join(scratch, "opal");
const servers: ChildProcess[] = [];
const env = {
  ...process.env,
  npm_config_prefer_offline: "true",
  npm_config_fund: "false",
  npm_config_audit: "false",
  NX_DAEMON: "false",
  NX_NO_CLOUD: "true",
  NX_TUI: "false",
};

/** Runs `command` with bash in the clone; resolves with its exit code and output. */
function sh(command: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn("bash", ["-c", command], { cwd: clone, env });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.on("close", (code) => resolve({ code, output }));
  });
}

/** Starts a serving command in its own process group; resolves once it says it is listening. */
function serve(command: string): Promise<string> {
  const child = spawn("bash", ["-c", `exec ${command}`], { cwd: clone, env, detached: true });
  servers.push(child);
  return new Promise((resolve, reject) => {
    let output = "";
    const onData = (d: Buffer) => {
      output += d;
      if (/listening on \S+/.test(output)) resolve(output);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => reject(new Error(`${command} exited ${code}:\n${output}`)));
  });
}

function stopServers(): Promise<unknown> {
  return Promise.all(
    servers.splice(0).map(
      (child) =>
        new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
          child.once("exit", resolve);
          process.kill(-child.pid!, "SIGTERM");
        }),
    ),
  );
}

afterAll(async () => {
  await stopServers();
  rmSync(scratch, { recursive: true, force: true }); // a clone with its node_modules: seconds
}, 120_000);

describe("a newcomer on a fresh clone", () => {
  it("runs the README's quick start, then every shell command of the guides, as written", async () => {
    cloneWorkingTree(clone);
    const port = await freePort();
    const ran: string[] = [];
    for (const doc of DOCS) {
      for (const written of shellCommands(readFileSync(join(clone, doc), "utf8"))) {
        if (NOT_RUN.has(written.replace(/\s+#.*$/, ""))) continue;
        const command = written.replaceAll("50051", String(port));
        if (SERVES.test(command)) {
          await stopServers();
          const listening = await serve(command);
          expect(listening, `${doc}: ${written}`).toMatch(/listening on 127\.0\.0\.1:\d+/);
        } else {
          const { code, output } = await sh(command);
          expect(code, `${doc}: ${written}\n${output}`).toBe(0);
          if (command.startsWith("npm ci && npm start"))
            expect(output).toMatch(/matches monolithic run\s+yes/);
        }
        ran.push(`${doc}: ${written}`);
      }
      await stopServers();
    }
    // The commands the issue names, so that a doc edit cannot silently drop them.
    const all = ran.join("\n");
    expect(all).toContain("README.md: npm ci && npm start");
    expect(all).toMatch(/mock\.md: npx opal-mock --port 50051/);
    expect(all).toMatch(/conformance\.md: npx opal-conformance --target 127\.0\.0\.1:50051/);
    expect(all).toMatch(/cli\/README\.md: npx opal prefill/);
    expect(all).toMatch(/python-device\/README\.md: npx opal-conformance --target/);
  }, 600_000);
});
