import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
// @ts-expect-error: a plain ES module of the tools, without declarations.
import { staleFiles } from "./codegen-stale.mjs";

describe("codegen --check (staleFiles)", () => {
  let root = "";
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  /** A repository root holding `files`. */
  function repo(files: Record<string, string>): string {
    root = mkdtempSync(join(tmpdir(), "opal-codegen-"));
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(join(root, path, ".."), { recursive: true });
      writeFileSync(join(root, path), text);
    }
    return root;
  }

  const generated = { "gen/a.ts": "a", "gen/sub/b.ts": "b", "other/reason.ts": "r" };

  it("passes when every generated file is as generated and nothing else is in the folders", () => {
    expect(staleFiles(repo(generated), generated, ["gen"])).toEqual([]);
  });

  it("reports a generated file that differs or is missing", () => {
    const { "gen/sub/b.ts": _, ...rest } = generated;
    expect(staleFiles(repo({ ...rest, "gen/a.ts": "edited" }), generated, ["gen"])).toEqual([
      "gen/a.ts",
      "gen/sub/b.ts",
    ]);
  });

  it("reports a leftover file in a generated folder that the generator no longer produces", () => {
    const committed = {
      ...generated,
      "gen/old.ts": "x",
      "gen/sub/old.js": "y",
      "other/kept.ts": "z",
    };
    expect(staleFiles(repo(committed), generated, ["gen"])).toEqual([
      "gen/old.ts",
      "gen/sub/old.js",
    ]);
  });
});
