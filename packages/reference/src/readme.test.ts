import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import * as reference from "./index";

/** Runs each ```ts block of the README against this package and checks its `// expected` comments. */
describe("README", () => {
  it("runs its examples and prints what their comments say", async () => {
    const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
    const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
    expect(blocks.length).toBeGreaterThanOrEqual(3);
    const dir = await mkdtemp(join(tmpdir(), "opal-readme-"));
    const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as new (
      ...args: string[]
    ) => (...values: unknown[]) => Promise<void>;
    try {
      for (const block of blocks) {
        const code = block
          .replace(/import \{([^}]*)\} from "@opal\/reference";/g, "const {$1} = lib;")
          .replaceAll("/tmp/opal-small", join(dir, "opal-small"));
        const expected = [...block.matchAll(/console\.log\(.*\); \/\/ (.*)$/gm)].map((m) => m[1]);
        const printed: string[] = [];
        const log = (...values: unknown[]) => printed.push(values.map(String).join(" "));
        await new AsyncFunction("lib", "console", code)(reference, { log });
        expect(printed).toEqual(expected);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
