import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SAFETENSORS_DESCRIPTOR_KEY } from "@opal/client";
import { decodeSafetensors, encodeOkvBytes, encodeSafetensors } from "@opal/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mhaDescriptor, randomCache } from "../../kv/test/fixtures";
import { built, type OpalMockProcess, opalCli, startOpalMock } from "./cli-harness";

describe.skipIf(!built)("the opal executable", () => {
  it("runs the demo: prefill over gRPC, layer-by-layer handoff, decode matching a monolithic run", async () => {
    const { code, stdout } = await opalCli([
      "demo",
      "--json",
      "--model",
      "opal-tiny",
      "--tokens",
      "8",
      "--prompt",
      "hello OPAL",
    ]);
    expect(code).toBe(0);
    const report = JSON.parse(stdout);
    expect(report.match).toBe(true);
    expect(report.promptTokens).toBe(11);
    expect(report.generatedTokens).toHaveLength(8);
    expect(report.generatedTokens).toEqual(report.monolithicTokens);
    expect(report.layersStreamed).toBe(2);
    expect(report.kvBytes).toBe(11 * 2 * 2 * 16 * 4 * 2);
    expect(report.projection.kvBytes).toBe(11 * 32 * 2 * 8 * 128 * 2);
  });

  it("prints a readable summary by default", async () => {
    const { code, stdout } = await opalCli(["demo", "--model", "opal-tiny", "--tokens", "4"]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/layer 1\/2 pushed, verified and loaded by the decode agent/);
    expect(stdout).toMatch(/matches monolithic run\s+yes \(4 tokens\)/);
    expect(stdout).toMatch(/time to first layer\s+\d/);
  });

  it("rejects bad flags with a message and a non-zero exit", async () => {
    const badModel = await opalCli(["demo", "--model", "gpt-9"]);
    expect(badModel.code).not.toBe(0);
    expect(badModel.stderr).toMatch(/Allowed choices are opal-tiny, opal-small/);
    const badTokens = await opalCli(["demo", "--tokens", "zero"]);
    expect(badTokens.stderr).toMatch(/--tokens must be a whole number >= 1/);
    const unknown = await opalCli(["fly"]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/unknown command 'fly'/);
  });

  it("has --help on every command", async () => {
    const { stdout } = await opalCli(["demo", "--help"]);
    expect(stdout).toMatch(/--prompt <text>/);
  });
});

/** 39 characters: 40 tokens with BOS, enough for vLLM to store two 16-token blocks. */
const PROMPT = "Prefill on optical hardware, decode GPU";

describe.skipIf(!built)("opal mock, prefill, inspect, convert and bench", () => {
  let dir: string;
  let address: string;
  let mock: OpalMockProcess;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "opal-cli-"));
    mock = await startOpalMock();
    address = mock.address;
  }, 30_000);
  afterAll(async () => {
    expect(await mock.stop()).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  });

  it("prefills to .okv, safetensors and a vLLM ExampleConnector folder", async () => {
    for (const [format, out] of [
      ["okv", "c.okv"],
      ["safetensors", "c.safetensors"],
      ["vllm-example", "vllm"],
    ]) {
      const path = join(dir, out!);
      const result = await opalCli([
        "prefill",
        "--target",
        address,
        "--model",
        "opal-tiny",
        "--prompt",
        PROMPT,
        "--out",
        path,
        "--format",
        format!,
        "--json",
      ]);
      expect(result.code, result.stderr).toBe(0);
      const summary = JSON.parse(result.stdout);
      expect(summary).toMatchObject({
        promptTokens: 40,
        layers: 2,
        kvBytes: 40 * 2 * 2 * 16 * 2 * 2,
        attempts: 1,
      });
      expect(existsSync(path)).toBe(true);
    }
  });

  it("prefills into SGLang token buffers and LMCache chunks", async () => {
    const sglang = join(dir, "sglang.safetensors");
    const lmcache = join(dir, "lmcache");
    for (const [format, out] of [
      ["sglang", sglang],
      ["lmcache", lmcache],
    ]) {
      const result = await opalCli([
        "prefill",
        "--target",
        address,
        "--model",
        "opal-tiny",
        "--prompt",
        PROMPT,
        "--out",
        out!,
        "--format",
        format!,
        "--json",
      ]);
      expect(result.code, result.stderr).toBe(0);
    }
    const file = decodeSafetensors(new Uint8Array(readFileSync(sglang)));
    expect(file.tensors.get("k_buffer.1")?.shape).toEqual([41, 2, 16]);
    const manifest = JSON.parse(readFileSync(join(lmcache, "manifest.json"), "utf8"));
    expect(manifest).toMatchObject({ chunkSizeTokens: 256, files: ["chunk-00000.bin"] });
    expect(readFileSync(join(lmcache, "chunk-00000.bin")).byteLength).toBe(2 * 2 * 40 * 2 * 16 * 2);
    const fp8 = await opalCli([
      "prefill",
      "--target",
      address,
      "--model",
      "opal-tiny",
      "--prompt",
      "x",
      "--out",
      lmcache,
      "--format",
      "lmcache",
      "--dtype",
      "fp8_e4m3fn",
    ]);
    expect(fp8.stderr).toMatch(/--format lmcache takes f32, f16 or bf16/);
  });

  it("reads token ids from a file", async () => {
    const tokens = join(dir, "tokens.json");
    writeFileSync(tokens, JSON.stringify([256, 1, 2, 3, 4, 5]));
    const result = await opalCli([
      "prefill",
      "--target",
      address,
      "--model",
      "opal-tiny",
      "--tokens-file",
      tokens,
      "--out",
      join(dir, "t.okv"),
      "--json",
    ]);
    expect(JSON.parse(result.stdout).promptTokens).toBe(6);
  });

  it("inspects a file, verifying its checksums, and converts it", async () => {
    const okv = join(dir, "c.okv");
    const inspected = await opalCli(["inspect", okv, "--json"]);
    expect(inspected.code).toBe(0);
    const report = JSON.parse(inspected.stdout);
    expect(report.descriptor).toMatchObject({ numLayers: 2, dtype: "bf16", tokenCount: 40 });
    expect(report.layers).toHaveLength(2);
    const converted = join(dir, "converted.safetensors");
    const convert = await opalCli([
      "convert",
      okv,
      converted,
      "--to",
      "safetensors",
      "--layout",
      "hnd",
      "--dtype",
      "f32",
    ]);
    expect(convert.code, convert.stderr).toBe(0);
    const again = JSON.parse((await opalCli(["inspect", converted, "--json"])).stdout);
    expect(again.descriptor).toMatchObject({ layout: "hnd", dtype: "f32", tokenCount: 40 });
    // safetensors carry no checksums: the summary says what was verified instead.
    const text = await opalCli(["inspect", converted]);
    expect(text.stdout).toContain("verified tensor sizes against the descriptor");
    expect(text.stdout).not.toContain("checksums ok");
  });

  it("prints what convert wrote as JSON with --json", async () => {
    const out = join(dir, "converted.okv");
    const result = await opalCli(["convert", join(dir, "c.okv"), out, "--to", "okv", "--json"]);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      in: join(dir, "c.okv"),
      inFormat: "okv",
      out,
      format: "okv",
      dtype: "bf16",
      layout: "nhd",
      layers: 2,
      kvBytes: 40 * 2 * 2 * 16 * 2 * 2,
      fileBytes: readFileSync(out).byteLength,
    });
  });

  it("refuses --dtype on a quantised cache with INVALID_ARGUMENT, writing nothing", async () => {
    const quantised = join(dir, "q.okv");
    writeFileSync(
      quantised,
      encodeOkvBytes(randomCache(mhaDescriptor({ dtype: "fp8_e4m3fn", scaleScheme: "per_token" }))),
    );
    const out = join(dir, "q-f16.okv");
    const result = await opalCli(["convert", quantised, out, "--to", "okv", "--dtype", "f16"]);
    expect(result.code).toBe(67);
    expect(result.stderr).toContain(
      "opal: [invalid_argument] --dtype converts float caches only (this one is fp8_e4m3fn with per_token scales)",
    );
    expect(existsSync(out)).toBe(false);
  });

  it("names the output's missing directory for convert and prefill, leaving no partial file", async () => {
    const missing = join(dir, "no-such-dir");
    const convert = await opalCli([
      "convert",
      join(dir, "c.okv"),
      join(missing, "x.safetensors"),
      "--to",
      "safetensors",
    ]);
    expect(convert.code).toBe(73);
    expect(convert.stderr).toContain(
      `opal: [failed_precondition] cannot write ${join(missing, "x.safetensors")}: its directory ${missing} does not exist`,
    );
    const prefill = await opalCli([
      "prefill",
      "--target",
      address,
      "--model",
      "opal-tiny",
      "--prompt",
      "x",
      "--out",
      join(missing, "x.okv"),
    ]);
    expect(prefill.code).toBe(73);
    expect(prefill.stderr).toContain(`its directory ${missing} does not exist`);
    expect(existsSync(missing)).toBe(false);
    expect(readdirSync(dir).filter((name) => name.includes(".partial-"))).toEqual([]);
  });

  it("reports a corrupt file as an error naming the failure", async () => {
    const bytes = readFileSync(join(dir, "c.okv"));
    bytes[bytes.length - 200] = (bytes[bytes.length - 200] ?? 0) ^ 0xff;
    const corrupt = join(dir, "corrupt.okv");
    writeFileSync(corrupt, bytes);
    const result = await opalCli(["inspect", corrupt]);
    expect([67, 79]).toContain(result.code);
    expect(result.stderr).toMatch(/opal: \[(data_loss|invalid_argument)\]/);
    const missing = await opalCli(["inspect", join(dir, "missing.okv")]);
    expect(missing.stderr).toMatch(/cannot open/);
  });

  it("explains an unreachable target and a model that is not loaded", async () => {
    const unreachable = await opalCli([
      "prefill",
      "--target",
      "127.0.0.1:1",
      "--model",
      "opal-tiny",
      "--prompt",
      "x",
      "--out",
      join(dir, "x.okv"),
    ]);
    expect(unreachable.code).toBe(78);
    expect(unreachable.stderr).toMatch(
      /\[unavailable\][\s\S]*hint: is a device running at 127.0.0.1:1\?/,
    );
    const missingModel = await opalCli([
      "prefill",
      "--target",
      address,
      "--model",
      "nope",
      "--prompt",
      "x",
      "--out",
      join(dir, "x.okv"),
    ]);
    expect(missingModel.stderr).toMatch(
      /\[failed_precondition\] model "nope" is not loaded\n {2}reason: MODEL_NOT_LOADED\n {2}hint: load it with `opal load`, or pick a loaded one: `opal device models --target 127\.0\.0\.1:\d+` lists them/,
    );
    const both = await opalCli([
      "prefill",
      "--target",
      address,
      "--model",
      "opal-tiny",
      "--out",
      join(dir, "x.okv"),
    ]);
    expect(both.stderr).toMatch(/exactly one of --prompt and --tokens-file/);
  });

  it("says what is wrong with token files, PEM files, targets and files that are not KV caches", async () => {
    const prefill = (...args: string[]) =>
      opalCli(["prefill", "--model", "opal-tiny", "--out", join(dir, "y.okv"), ...args]);
    const tokens = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    const empty = tokens("empty.txt", "\n");
    const broken = tokens("broken.json", "[1, 2");
    const hex = tokens("hex.txt", "1 2 0x10");
    const random = join(dir, "random.bin");
    writeFileSync(random, Buffer.from("not a cache at all, just some bytes"));
    const badDescriptor = join(dir, "bad-descriptor.safetensors");
    writeFileSync(
      badDescriptor,
      encodeSafetensors({}, { metadata: { [SAFETENSORS_DESCRIPTOR_KEY]: "{not json" } }),
    );
    const cases: [() => ReturnType<typeof opalCli>, string, number][] = [
      [
        () => prefill("--target", address, "--tokens-file", empty),
        `[invalid_argument] --tokens-file ${empty} holds no token ids`,
        67,
      ],
      [
        () => prefill("--target", address, "--tokens-file", broken),
        `[invalid_argument] --tokens-file ${broken} is not a JSON array of token ids:`,
        67,
      ],
      [
        () => prefill("--target", address, "--tokens-file", hex),
        `--tokens-file ${hex} must hold token ids, whole numbers in 0..4294967295 (got "0x10" at index 2)`,
        67,
      ],
      [
        () => prefill("--target", address, "--prompt", "x", "--tls-ca", join(dir, "ca.pem")),
        `[not_found] cannot read --tls-ca ${join(dir, "ca.pem")}: ENOENT`,
        69,
      ],
      [
        () => prefill("--target", "127.0.0.1:1", "--prompt", "x", "--format", "sglang"),
        "hint: is a device running at 127.0.0.1:1? Start one with `opal mock --port 1`",
        78,
      ],
      [
        () => prefill("--target", "localhost", "--prompt", "x", "--timeout", "2000"),
        "hint: is a device running at localhost?\n",
        78,
      ],
      [
        () => opalCli(["inspect", dir]),
        `[invalid_argument] ${dir} is a folder but not a KV cache`,
        67,
      ],
      [
        () => opalCli(["inspect", random]),
        `${random} is neither a .okv file (no OKV magic) nor a safetensors file:`,
        67,
      ],
      [
        () => opalCli(["inspect", badDescriptor]),
        `[invalid_argument] ${badDescriptor}: the OPAL descriptor in __metadata__ is not JSON:`,
        67,
      ],
    ];
    for (const [run, message, exitCode] of cases) {
      const { code, stderr } = await run();
      expect(code, stderr).toBe(exitCode);
      expect(stderr).toContain(message);
      expect(stderr).not.toMatch(/^\s+at /m);
    }
  });

  it("runs the conformance suite against a device", async () => {
    const json = join(dir, "conformance.json");
    const result = await opalCli([
      "conformance",
      "--target",
      address,
      "--focus",
      "^identity\\.",
      "--json",
      json,
      "--quiet",
    ]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    const report = JSON.parse(readFileSync(json, "utf8"));
    expect(report.info.protocolVersion).toBe("1.0.0");
    const unreachable = await opalCli([
      "conformance",
      "--target",
      "127.0.0.1:1",
      "--focus",
      "^identity\\.",
      "--quiet",
    ]);
    expect(unreachable.code).toBe(78);
  });

  it("benchmarks a device", async () => {
    const result = await opalCli([
      "bench",
      "--target",
      address,
      "--model",
      "opal-tiny",
      "--tokens",
      "64",
      "--requests",
      "3",
      "--json",
    ]);
    expect(result.code, result.stderr).toBe(0);
    const bench = JSON.parse(result.stdout);
    expect(bench.requests).toBe(3);
    expect(bench.gigabytesPerSecond).toBeGreaterThan(0);
    expect(bench.latencyMsP99).toBeGreaterThanOrEqual(bench.latencyMsP50);
  });
});
