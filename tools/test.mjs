#!/usr/bin/env node
// `npm test`: every check of the repository in one run. Static checks first (generated code is
// current, proto lint and breaking-change check, formatting and lint, architecture, types), then
// builds and API docs (the CLI tests run the built executables), then the vitest suite. Ends with the plain line `N passed, N failed`
// (vitest tests plus checks), and exits non-zero when anything failed.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = (name) => join(root, "node_modules/.bin", name);
const results = [];

function step(name, command, args, options = {}) {
  const started = Date.now();
  console.log(`\n=== ${name}: ${[command, ...args].join(" ")}`);
  const run = spawnSync(command, args, { cwd: root, stdio: "inherit", ...options });
  const ok = run.status === 0;
  results.push({ name, ok, seconds: (Date.now() - started) / 1000 });
  return ok;
}

function previousCommitHasProto() {
  const probe = spawnSync("git", ["cat-file", "-e", "HEAD~1:proto"], { cwd: root });
  return probe.status === 0;
}

step("codegen is current", "node", ["tools/codegen.mjs", "--check"]);
step("buf lint", bin("buf"), ["lint"]);
if (previousCommitHasProto()) {
  step("buf breaking vs HEAD~1", bin("buf"), ["breaking", "--against", ".git#ref=HEAD~1"]);
} else {
  console.log("\n=== buf breaking: skipped (HEAD~1 has no proto/ or history is shallow)");
}
step("biome", bin("biome"), ["check", "."]);
step("architecture (dependency-cruiser)", bin("depcruise"), [
  "packages",
  "--config",
  ".dependency-cruiser.cjs",
]);
step("package manifests", "node", ["tools/check-package-deps.mjs"]);
step("typecheck", bin("tsc"), ["-p", "tsconfig.json"]);

step("build and API docs (nx; the CLI tests run the built executables)", bin("nx"), [
  "run-many",
  "-t",
  "build",
  "docs",
  "--outputStyle=static",
]);

const scratch = mkdtempSync(join(tmpdir(), "opal-test-"));
const report = join(scratch, "vitest.json");
step("vitest", bin("vitest"), [
  "run",
  "--reporter=default",
  "--reporter=json",
  `--outputFile.json=${report}`,
]);
let tests = { passed: 0, failed: 0, skipped: 0 };
if (existsSync(report)) {
  const json = JSON.parse(readFileSync(report, "utf8"));
  tests = {
    passed: json.numPassedTests,
    failed: json.numFailedTests,
    skipped: json.numPendingTests + json.numTodoTests,
  };
}
rmSync(scratch, { recursive: true, force: true });

const checks = results.filter((r) => r.name !== "vitest");
const failedChecks = checks.filter((r) => !r.ok);
console.log("\n=== summary");
for (const r of results)
  console.log(`${r.ok ? "ok  " : "FAIL"} ${r.name} (${r.seconds.toFixed(1)} s)`);
console.log(
  `vitest: ${tests.passed} passed, ${tests.failed} failed, ${tests.skipped} skipped; checks: ${checks.length - failedChecks.length} passed, ${failedChecks.length} failed`,
);
const vitestOk = results.find((r) => r.name === "vitest")?.ok ?? false;
const failed = tests.failed + failedChecks.length + (vitestOk || tests.failed > 0 ? 0 : 1);
console.log(`${tests.passed + checks.length - failedChecks.length} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
