/**
 * Writes the hostile-input corpus next to this script: `<format>-<name>.<REASON>.bin`.
 * Run from the repo root: node --conditions=source --import tsx packages/kv/test/corpus/generate.ts
 */
import { readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildCorpus } from "./build-corpus";

const dir = dirname(fileURLToPath(import.meta.url));
for (const file of readdirSync(dir)) if (file.endsWith(".bin")) rmSync(join(dir, file));
for (const c of buildCorpus())
  writeFileSync(join(dir, `${c.format}-${c.name}.${c.reason}.bin`), c.bytes);
console.log(`wrote ${buildCorpus().length} files to ${dir}`);
