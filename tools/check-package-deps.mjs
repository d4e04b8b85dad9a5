#!/usr/bin/env node
// Checks that each package.json declares exactly the workspace packages its sources import, and
// only ones its layer allows (tools/architecture.mjs). dependency-cruiser checks the imports
// themselves; this keeps the published manifests honest.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ALLOWED_DEPENDENCIES } from "./architecture.mjs";

const root = fileURLToPath(new URL("../packages/", import.meta.url));
const problems = [];
for (const name of readdirSync(root)) {
  const manifest = JSON.parse(readFileSync(join(root, name, "package.json"), "utf8"));
  const declared = Object.keys(manifest.dependencies ?? {})
    .filter((dep) => dep.startsWith("@opal/"))
    .map((dep) => dep.slice("@opal/".length));
  const imported = new Set();
  for (const file of readdirSync(join(root, name, "src"), { recursive: true })) {
    const path = String(file);
    if (!path.endsWith(".ts") || path.endsWith(".test.ts")) continue;
    const source = readFileSync(join(root, name, "src", path), "utf8");
    for (const match of source.matchAll(/from\s+"@opal\/([a-z-]+)"/g)) imported.add(match[1]);
  }
  const allowed = ALLOWED_DEPENDENCIES[name] ?? [];
  for (const dep of declared) {
    if (!allowed.includes(dep))
      problems.push(`${name} declares @opal/${dep}, which its layer forbids`);
    if (!imported.has(dep)) problems.push(`${name} declares @opal/${dep} but never imports it`);
  }
  for (const dep of imported) {
    if (!declared.includes(dep)) problems.push(`${name} imports @opal/${dep} without declaring it`);
  }
}
if (problems.length > 0) {
  for (const problem of problems) console.error(`package deps: ${problem}`);
  process.exit(1);
}
console.log("package deps: every package.json matches its imports and its layer");
