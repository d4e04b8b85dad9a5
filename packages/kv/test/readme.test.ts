import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const packageDir = join(dirname(fileURLToPath(import.meta.url)), "..");

describe("README", () => {
  it("its example runs and prints what it promises", () => {
    const readme = readFileSync(join(packageDir, "README.md"), "utf8");
    const code = readme.match(/```ts\n([\s\S]*?)```/)?.[1];
    expect(code).toBeDefined();
    // Run from inside the package so "@opal/kv" resolves through the workspace, from source.
    const dir = mkdtempSync(join(packageDir, "test", ".readme-"));
    try {
      const file = join(dir, "example.mts");
      writeFileSync(file, code as string);
      const result = spawnSync(process.execPath, ["--conditions=source", "--import", "tsx", file], {
        encoding: "utf8",
        cwd: packageDir,
        timeout: 30_000,
      });
      expect(result.stderr).toBe("");
      expect(result.stdout).toMatch(
        /layer 0 verified\nlayer 1 verified\ndigest [0-9a-f]{16}…\nallocation holds 4096 bytes\n/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
