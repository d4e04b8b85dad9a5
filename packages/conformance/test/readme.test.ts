import { readFile } from "node:fs/promises";
import * as conformance from "@opal/conformance";
import * as mock from "@opal/mock";
import { describe, expect, it } from "vitest";

/** Runs each ```ts block of the README and checks its `// expected` comments. */
describe("README", () => {
  it("runs its example and prints what its comments say", async () => {
    const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
    const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
    expect(blocks.length).toBeGreaterThanOrEqual(1);
    const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as new (
      ...args: string[]
    ) => (...values: unknown[]) => Promise<void>;
    for (const block of blocks) {
      const code = block
        .replace(/import \{([^}]*)\} from "@opal\/conformance";/g, "const {$1} = conformance;")
        .replace(/import \{([^}]*)\} from "@opal\/mock";/g, "const {$1} = mockLib;");
      const expected = [...block.matchAll(/console\.log\(.*\); \/\/ (.*)$/gm)].map((m) => m[1]);
      const printed: string[] = [];
      const log = (...values: unknown[]) => printed.push(values.map(String).join(" "));
      await new AsyncFunction("conformance", "mockLib", "console", code)(conformance, mock, {
        log,
      });
      expect(printed).toEqual(expected);
    }
  });
});
