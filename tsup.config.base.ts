import { defineConfig, type Options } from "tsup";

const library: Options = {
  entry: ["src/index.ts"],
  format: ["esm", "cjs"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node20",
  // `import.meta.url` in the CommonJS build too (@opal/kv locates its native addon with it).
  shims: true,
  // Classes keep their names in the bundle: an error prints as OpalError, not _OpalError.
  keepNames: true,
};

/** Shared tsup settings: ESM + CJS + .d.ts from `src/index.ts`, for Node 20. */
export default defineConfig(library);

/** The library build plus executables (`name` → entry file), ESM with a shebang. */
export function withExecutables(entries: Record<string, string>) {
  return defineConfig([
    library,
    {
      entry: entries,
      format: ["esm"],
      target: "node20",
      sourcemap: true,
      clean: false,
      keepNames: true,
      banner: { js: "#!/usr/bin/env node" },
    },
  ]);
}
