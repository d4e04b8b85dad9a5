import { defineConfig } from "tsup";
import base from "../../tsup.config.base";

export default defineConfig([
  base as Record<string, unknown>,
  {
    entry: { "opal-mock": "bin/opal-mock.ts" },
    format: ["esm"],
    target: "node20",
    sourcemap: true,
    clean: false,
    banner: { js: "#!/usr/bin/env node" },
  },
]);
