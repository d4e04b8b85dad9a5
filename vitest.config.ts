import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const packagesDir = fileURLToPath(new URL("./packages/", import.meta.url));

/**
 * Tests import workspace packages from source, so `npm test` needs no build: every export of a
 * package (`@opal/kv`, `@opal/kv/okv`, ...) maps to its `source` condition, matched exactly.
 */
const alias = readdirSync(packagesDir).flatMap((name) => {
  const manifest = JSON.parse(readFileSync(`${packagesDir}${name}/package.json`, "utf8"));
  return Object.entries(manifest.exports as Record<string, { source: string }>).map(
    ([subpath, conditions]) => ({
      find: new RegExp(`^@opal/${name}${subpath.slice(1)}$`),
      replacement: `${packagesDir}${name}/${conditions.source.slice(2)}`,
    }),
  );
});

export default defineConfig({
  resolve: { alias },
  test: {
    include: [
      "packages/*/src/**/*.test.ts",
      "packages/*/test/**/*.test.ts",
      "examples/**/*.test.ts",
      "tools/**/*.test.ts",
    ],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
  },
});
