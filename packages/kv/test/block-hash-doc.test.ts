import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const packageDir = join(dirname(fileURLToPath(import.meta.url)), "..");
const doc = join(packageDir, "../../docs/formats/vllm-block-hashes.md");

describe("docs/formats/vllm-block-hashes.md", () => {
  it("its TypeScript example runs as written, given a prompt and an image hash", () => {
    const code = readFileSync(doc, "utf8").match(/```ts\n([\s\S]*?)```/)?.[1];
    expect(code).toBeDefined();
    // The example's two free names, then what it computed.
    const program = [
      "const tokenIds = Array.from({ length: 600 }, (_, i) => i % 32000);",
      'const imageHash = "f".repeat(64);',
      code,
      "console.log(hashes.length, eventIds.length, typeof eventIds[0]);",
    ].join("\n");
    const dir = mkdtempSync(join(packageDir, "test", ".doc-"));
    try {
      const file = join(dir, "example.mts");
      writeFileSync(file, program);
      const result = spawnSync(process.execPath, ["--conditions=source", "--import", "tsx", file], {
        encoding: "utf8",
        cwd: packageDir,
        timeout: 30_000,
      });
      expect(result.stderr).toBe("");
      // 600 tokens in blocks of 16: 37 full blocks, each with its 64-bit event id.
      expect(result.stdout).toMatch(/^37 37 (bigint|number)\n$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
