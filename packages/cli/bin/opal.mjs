#!/usr/bin/env node
// The `opal` executable as npm links it. npm links a package's bins when it installs, which in a
// clone of the repository is before the build, so this launcher is committed as is: it runs the
// built dist/opal.js (compiled from bin/opal.ts), or says how to build it.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const built = new URL("../dist/opal.js", import.meta.url);
if (!existsSync(fileURLToPath(built))) {
  console.error(
    "opal: @opal/cli is not built yet; in a clone of the OPAL repository run `npm run build` (or `npm start`) first",
  );
  process.exit(1);
}
await import(built.href);
