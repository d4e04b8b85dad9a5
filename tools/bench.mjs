#!/usr/bin/env node
// `npm run bench`: runs every benchmark of the repository (packages/*/bench/*.bench.ts), each a
// script printing one JSON line per figure, and writes bench/results.json and bench/results.md.
// A figure with a baseline is judged by its ratio against that baseline measured in the same run
// (`target` is the minimum ratio); without one, by its value (`target` minimum, `max` maximum).
// Missed targets are marked; the exit code stays 0 unless a benchmark crashed. It builds the
// packages first (nx caches what is built): some benchmarks measure the built package, as an
// integrator's process runs it.
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { buildPackages } from "./build-packages.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const only = process.argv.slice(2);
const scripts = readdirSync(join(root, "packages"))
  .flatMap((pkg) => {
    const dir = join(root, "packages", pkg, "bench");
    try {
      return readdirSync(dir)
        .filter((f) => f.endsWith(".bench.ts"))
        .map((f) => join(dir, f));
    } catch {
      return [];
    }
  })
  .filter((file) => only.length === 0 || only.some((o) => file.includes(o)));

buildPackages(root, "npm run bench");

const figures = [];
const crashed = [];
const started = Date.now();
for (const script of scripts) {
  const name = relative(root, script);
  process.stdout.write(`running ${name} … `);
  const t0 = Date.now();
  const run = spawnSync(
    process.execPath,
    ["--conditions=source", "--import", "tsx", "--expose-gc", script],
    {
      cwd: root,
      encoding: "utf8",
      timeout: 240_000,
      maxBuffer: 16 * 1024 * 1024,
    },
  );
  const lines = (run.stdout ?? "").split("\n").filter((l) => l.startsWith('{"bench"'));
  for (const line of lines) figures.push({ script: name, ...JSON.parse(line) });
  if (run.status !== 0) {
    crashed.push(name);
    console.log(`FAILED (exit ${run.status ?? run.signal})\n${(run.stderr ?? "").slice(-2000)}`);
  } else {
    console.log(`${lines.length} figures in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
}

const judged = figures.map((f) => {
  let status = "—";
  if (f.max !== undefined && f.max !== null) status = f.value <= f.max ? "ok" : "MISSED";
  else if (f.target !== undefined && f.target !== null) {
    const measured = f.ratio ?? f.value;
    status = measured >= f.target ? "ok" : "MISSED";
  }
  return { ...f, status };
});

const fmt = (v) => (v === null || v === undefined ? "" : String(v));
const header =
  "| benchmark | metric | value | baseline | baseline value | ratio | target | status |";
const rows = judged.map(
  (f) =>
    `| ${f.bench} | ${f.metric} | ${fmt(f.value)} | ${fmt(f.baseline)} | ${fmt(f.baselineValue)} | ${fmt(f.ratio)} | ${f.max !== undefined && f.max !== null ? `≤ ${f.max}` : f.target !== null && f.target !== undefined ? `≥ ${f.target}${f.ratio !== null && f.ratio !== undefined ? "×" : ""}` : ""} | ${f.status === "MISSED" ? "**MISSED**" : f.status} |`,
);
const table = [header, "|---|---|---|---|---|---|---|---|", ...rows].join("\n");
const missed = judged.filter((f) => f.status === "MISSED");
const seconds = (Date.now() - started) / 1000;
const summary = `${judged.length} figures from ${scripts.length} benchmarks in ${seconds.toFixed(0)} s; ${missed.length} targets missed${crashed.length ? `; ${crashed.length} benchmarks crashed` : ""}`;

mkdirSync(join(root, "bench"), { recursive: true });
writeFileSync(
  join(root, "bench/results.json"),
  `${JSON.stringify({ date: new Date().toISOString(), node: process.version, seconds, figures: judged, crashed }, null, 2)}\n`,
);
writeFileSync(join(root, "bench/results.md"), `# Benchmark results\n\n${summary}\n\n${table}\n`);
console.log(`\n${table}\n\n${summary}\nwritten to bench/results.json and bench/results.md`);
process.exit(crashed.length > 0 ? 1 : 0);
