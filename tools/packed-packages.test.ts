import { execFile } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

// The packages as a user outside the repository gets them: `npm pack` of every published @opal
// package, installed into an empty project with nothing but those tarballs and the registry (the
// local npm cache first), then used from ESM and CommonJS, type-checked both ways with the
// repository's TypeScript, and the executables run through npx.

const run = promisify(execFile);
const root = fileURLToPath(new URL("..", import.meta.url));
const packagesDir = join(root, "packages");
const published = readdirSync(packagesDir)
  .map((name) => JSON.parse(readFileSync(join(packagesDir, name, "package.json"), "utf8")))
  .filter((manifest) => !manifest.private) as { name: string; version: string }[];
const built = published.every((m) =>
  existsSync(join(packagesDir, m.name.slice("@opal/".length), "dist/index.js")),
);
if (!built && process.env.CI) throw new Error("packages are not built: npm test builds them first");
const rootManifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));

const scratch = mkdtempSync(join(tmpdir(), "opal-packed-"));
const app = join(scratch, "app");
const env = { ...process.env, npm_config_prefer_offline: "true", npm_config_fund: "false" };
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The same program in both module systems: a prefill on the mock, through the SDK. */
const program = (load: string) => `${load}
async function main() {
  const mock = await serveMockDevice({ profile: "instant", models: ["opal-tiny"] }, { port: 0 });
  const device = createDeviceClient(mock.address);
  const outcome = await startPrefill(device, {
    requestId: "packed",
    modelId: "opal-tiny",
    promptTokenIds: Uint32Array.of(256, 72, 105),
    kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  }).result;
  const error = new OpalError(Code.NOT_FOUND, "gone", { reason: Reason.KV_HANDLE_NOT_FOUND });
  // @opal/kv's sub-paths share the root's code: a sub-path's error is the root's KvFormatError.
  const areas = [decodeOkvBytes, decodeSafetensors, toKvLayout, computeOpalBlockHashes];
  let okvError: unknown;
  try {
    decodeOkvBytes(new Uint8Array(4));
  } catch (caught) {
    okvError = caught;
  }
  console.log(JSON.stringify({
    tokens: outcome.stats.promptTokens,
    servedBy: outcome.servedBy === mock.address,
    printed: inspect(error).split("\\n")[0],
    same: error instanceof CoreError,
    kvSubpaths: areas.every((f) => typeof f === "function") && okvError instanceof KvFormatError,
  }));
  await device.close();
  await mock.close({ graceMs: 0 });
}
main().catch((error) => { console.error(error); process.exit(1); });
`;

describe.skipIf(!built)("the packed @opal packages in an empty project", () => {
  it("install from their tarballs and the registry, type-check and run under ESM and CommonJS", async () => {
    const tarballs = join(scratch, "tarballs");
    mkdirSync(tarballs);
    await run(
      "npm",
      ["pack", "--pack-destination", tarballs, ...published.flatMap((m) => ["-w", m.name])],
      { cwd: root, env },
    );
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true }));
    const devTools = ["typescript", "@types/node"].map(
      (name) => `${name}@${rootManifest.devDependencies[name]}`,
    );
    await run(
      "npm",
      [
        "install",
        "--no-audit",
        ...readdirSync(tarballs).map((t) => join(tarballs, t)),
        ...devTools,
      ],
      { cwd: app, env, timeout: 180_000 },
    );

    // The same source as .mts and .cts: TypeScript emits ESM for one and require() for the other.
    const imports = `import { inspect } from "node:util";
import { Code, createDeviceClient, OpalError, Reason, startPrefill } from "@opal/client";
import { OpalError as CoreError } from "@opal/core";
import { KvFormatError } from "@opal/kv";
import { computeOpalBlockHashes } from "@opal/kv/hashing";
import { toKvLayout } from "@opal/kv/layouts";
import { decodeOkvBytes } from "@opal/kv/okv";
import { decodeSafetensors } from "@opal/kv/safetensors";
import { serveMockDevice } from "@opal/mock";`;
    writeFileSync(join(app, "esm.mts"), program(imports));
    writeFileSync(join(app, "cjs.cts"), program(imports));
    // Types for both: NodeNext resolves the `import` and `require` conditions' declarations.
    const tsc = join(app, "node_modules/.bin/tsc");
    await run(
      tsc,
      [
        "--module",
        "nodenext",
        "--target",
        "es2022",
        "--strict",
        "--skipLibCheck",
        "--outDir",
        "out",
        "esm.mts",
        "cjs.cts",
      ],
      { cwd: app },
    );
    for (const file of ["out/esm.mjs", "out/cjs.cjs"]) {
      const { stdout } = await run(process.execPath, [file], { cwd: app, timeout: 60_000 });
      expect(JSON.parse(stdout), file).toEqual({
        tokens: 3,
        servedBy: true,
        printed: "OpalError: [not_found] gone",
        same: true,
        kvSubpaths: true,
      });
    }

    for (const [bin, pkg] of [
      ["opal", "@opal/cli"],
      ["opal-mock", "@opal/mock"],
      ["opal-conformance", "@opal/conformance"],
    ] as const) {
      const { stdout } = await run("npx", ["--no-install", bin, "--version"], { cwd: app, env });
      expect(stdout.trim(), bin).toBe(published.find((m) => m.name === pkg)!.version);
    }
  }, 300_000);
});
