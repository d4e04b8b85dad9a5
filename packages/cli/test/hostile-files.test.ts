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
import { ExitCode } from "@opal/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { built, OPAL, type OpalMockProcess, runNode, startOpalMock } from "./cli-harness";

const corpus = fileURLToPath(new URL("../../kv/test/corpus", import.meta.url));

/**
 * Runs `opal` with a 256 MB heap: a file that makes it allocate in proportion to what it claims
 * (30 million layers) crashes it with a heap error instead of the clean error asserted below.
 */
const opalCli = (args: string[]) => runNode(OPAL, args, { maxOldSpaceMb: 256, timeoutMs: 60_000 });

describe.skipIf(!built)("opal inspect and convert on hostile KV files (issue #18)", () => {
  const dir = mkdtempSync(join(tmpdir(), "opal-hostile-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const cases: [string, RegExp][] = [
    [
      "safetensors-kv-descriptor-30m-layers.INVALID_DESCRIPTOR.bin",
      /\[invalid_argument\] .*descriptor\.numLayers: expected an integer in \[1, 65536\], got 30000000/,
    ],
    [
      "safetensors-kv-descriptor-null.INVALID_DESCRIPTOR.bin",
      /\[invalid_argument\] .*descriptor: expected an object, got null/,
    ],
    [
      "okv-descriptor-30m-layers.INVALID_DESCRIPTOR.bin",
      /\[invalid_argument\] .*descriptor\.numLayers: expected an integer in \[1, 65536\], got 30000000/,
    ],
    ["okv-descriptor-null.INVALID_HEADER.bin", /\[invalid_argument\] .*descriptor/],
  ];
  for (const [file, message] of cases) {
    it(`${file}: a clear error and exit 67 (invalid argument), no heap exhaustion or TypeError`, async () => {
      const path = join(corpus, file);
      const inspect = await opalCli(["inspect", path]);
      const out = join(dir, `${file}.okv`);
      const convert = await opalCli(["convert", path, out, "--to", "okv"]);
      for (const result of [inspect, convert]) {
        expect(result.code, result.stderr).toBe(ExitCode.INVALID_ARGUMENT);
        expect(result.stderr).toMatch(message);
        expect(result.stderr).not.toMatch(/TypeError|heap|^\s+at /m);
      }
      expect(existsSync(out)).toBe(false);
    });
  }
});

describe.skipIf(!built)(
  "opal prefill and convert never delete what OPAL did not create (issue #18)",
  () => {
    let dir: string;
    let address: string;
    let mock: OpalMockProcess;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "opal-operator-"));
      mock = await startOpalMock();
      address = mock.address;
    }, 30_000);
    afterAll(async () => {
      await mock.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    const prefill = (format: string, out: string, ...extra: string[]) =>
      opalCli([
        "prefill",
        "--target",
        address,
        "--model",
        "opal-tiny",
        "--prompt",
        "an operator's folder",
        "--dtype",
        "f16",
        "--format",
        format,
        "--out",
        out,
        ...extra,
      ]);

    it("--format lmcache refuses an existing non-empty folder; --force replaces it whole", async () => {
      const out = join(dir, "kv");
      mkdirSync(join(out, "notes"), { recursive: true });
      writeFileSync(join(out, "notes", "precious.txt"), "the operator's");
      const refused = await prefill("lmcache", out);
      expect(refused.code).toBe(ExitCode.ALREADY_EXISTS);
      expect(refused.stderr).toContain(`[already_exists] ${out} already exists and is not empty`);
      expect(readFileSync(join(out, "notes", "precious.txt"), "utf8")).toBe("the operator's");
      const forced = await prefill("lmcache", out, "--force");
      expect(forced.code, forced.stderr).toBe(0);
      expect(readdirSync(out).sort()).toEqual(["chunk-00000.bin", "manifest.json"]);
      expect(readdirSync(dir)).toEqual(["kv"]); // no temporary or set-aside folder left
    });

    it("file outputs (okv, safetensors, sglang, convert) refuse an existing file unless --force", async () => {
      for (const format of ["okv", "safetensors", "sglang"]) {
        const out = join(dir, `existing.${format}`);
        writeFileSync(out, "keep");
        const refused = await prefill(format, out);
        expect(refused.code, format).toBe(ExitCode.ALREADY_EXISTS);
        expect(refused.stderr).toContain("[already_exists]");
        expect(readFileSync(out, "utf8")).toBe("keep");
        const forced = await prefill(format, out, "--force");
        expect(forced.code, forced.stderr).toBe(0);
        expect(readFileSync(out).byteLength).toBeGreaterThan(4);
      }
      const target = join(dir, "converted.safetensors");
      writeFileSync(target, "keep");
      const input = join(dir, "existing.okv");
      const convert = await opalCli(["convert", input, target, "--to", "safetensors"]);
      expect(convert.code).toBe(ExitCode.ALREADY_EXISTS);
      expect(convert.stderr).toContain("[already_exists]");
      expect(readFileSync(target, "utf8")).toBe("keep");
      const forced = await opalCli(["convert", input, target, "--to", "safetensors", "--force"]);
      expect(forced.code, forced.stderr).toBe(0);
      expect(readdirSync(dir).filter((name) => name.includes(".partial-"))).toEqual([]);
    });
  },
);
