#!/usr/bin/env node
import { existsSync, readdirSync, readFileSync } from "node:fs";
// Checks each package.json against its sources: every package its production code imports (src/
// and bin/) is declared in `dependencies` or `peerDependencies` (a peer, such as
// @opentelemetry/api, also in `devDependencies` for the package's own tests, and never in
// `dependencies` too), every declared dependency is imported by production code, and
// workspace dependencies respect the layers of tools/architecture.mjs. dependency-cruiser checks
// the imports themselves; this keeps the published manifests honest (a bundled or missing
// dependency only shows up after publishing otherwise).
import { builtinModules } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ALLOWED_DEPENDENCIES } from "./architecture.mjs";

const root = fileURLToPath(new URL("../packages/", import.meta.url));
const builtins = new Set(builtinModules);
const problems = [];

/**
 * Production sources under `dir`: hand-written TypeScript, and of generated code the JavaScript
 * (protobufjs static code imports protobufjs at run time; its declarations import `long`, a type
 * the generated code never loads).
 */
function sourceFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((path) =>
      path.startsWith("gen/")
        ? path.endsWith(".js")
        : path.endsWith(".ts") && !path.endsWith(".test.ts"),
    )
    .map((path) => join(dir, path));
}

/** The package.json of an installed dependency, or undefined (a workspace or missing package). */
function installedManifest(dep) {
  const path = join(root, "..", "node_modules", dep, "package.json");
  return existsSync(path) ? JSON.parse(readFileSync(path, "utf8")) : undefined;
}

/** `@scope/name/sub` → `@scope/name`; `name/sub` → `name`. */
function packageOf(specifier) {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

for (const name of readdirSync(root)) {
  const manifest = JSON.parse(readFileSync(join(root, name, "package.json"), "utf8"));
  const peers = Object.keys(manifest.peerDependencies ?? {});
  const declared = new Set([...Object.keys(manifest.dependencies ?? {}), ...peers]);
  for (const peer of peers) {
    if (Object.hasOwn(manifest.dependencies ?? {}, peer))
      problems.push(`${name} declares ${peer} both as a dependency and as a peer`);
    if (!Object.hasOwn(manifest.devDependencies ?? {}, peer))
      problems.push(`${name} takes ${peer} as a peer without a devDependency to test against`);
  }
  const imported = new Set();
  for (const file of [
    ...sourceFiles(join(root, name, "src")),
    ...sourceFiles(join(root, name, "bin")),
  ]) {
    const source = readFileSync(file, "utf8");
    const statements =
      /^(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"|^import\s+"([^"]+)"|\bimport\(\s*"([^"]+)"\s*\)/gm;
    for (const match of source.matchAll(statements)) {
      const specifier = match[1] ?? match[2] ?? match[3];
      if (specifier.startsWith(".")) continue;
      if (specifier.startsWith("node:") || builtins.has(specifier)) continue;
      imported.add(packageOf(specifier));
    }
  }
  for (const dep of imported) {
    if (!declared.has(dep))
      problems.push(
        `${name} imports ${dep} without declaring it in dependencies or peerDependencies`,
      );
  }
  // A dependency the code does not import may still be the peer of one it does (grpc-js for
  // @grpc/reflection): the package must then provide it.
  const peersOfImported = new Set(
    [...imported].flatMap((dep) => Object.keys(installedManifest(dep)?.peerDependencies ?? {})),
  );
  for (const dep of Object.keys(manifest.dependencies ?? {})) {
    if (!dep.startsWith("@opal/") && !imported.has(dep) && !peersOfImported.has(dep))
      problems.push(
        `${name} declares ${dep} in dependencies but its production code never imports it (a devDependency?)`,
      );
  }
  const allowed = ALLOWED_DEPENDENCIES[name] ?? [];
  for (const dep of declared) {
    if (!dep.startsWith("@opal/")) continue;
    const layer = dep.slice("@opal/".length);
    if (!allowed.includes(layer)) problems.push(`${name} declares ${dep}, which its layer forbids`);
    if (!imported.has(dep)) problems.push(`${name} declares ${dep} but never imports it`);
  }
}
if (problems.length > 0) {
  for (const problem of problems) console.error(`package deps: ${problem}`);
  process.exit(1);
}
console.log("package deps: every package.json matches its imports and its layer");
