import { readFile } from "node:fs/promises";
import { toConformanceTests } from "@opal/conformance";
import { expect, it } from "vitest";

it("docs/guides/conformance.md lists every test of the suite, and no other, with its tag and spec", async () => {
  const guide = await readFile(
    new URL("../../../docs/guides/conformance.md", import.meta.url),
    "utf8",
  );
  const rows = new Map(
    [...guide.matchAll(/^\| `([a-z-]+\.[a-z0-9.-]+)`\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|/gm)].map(
      (m) => [m[1]!, { tag: m[2]!, spec: m[3]! }],
    ),
  );
  const tests = toConformanceTests();
  expect([...rows.keys()].sort()).toEqual(tests.map((t) => t.id).sort());
  for (const t of tests) {
    const tag = t.tag.kind === "core" ? "Core" : `Optional(${t.tag.feature})`;
    expect(rows.get(t.id), t.id).toEqual({ tag, spec: t.spec.join(" ") });
  }
});
