import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createPresetWeights, exportHfCheckpoint } from "@opal/reference";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { built, distFile, OPAL, type OpalMockProcess, runNode, startOpalMock } from "./cli-harness";

// The conventions people expect from gh, kubectl and grpcurl, on the built executables: --version,
// required options and examples in --help, the exit-code table of `ExitCode` (@opal/core), --json
// failures on stdout, device errors with reason and field, `opal device …` and `opal load`.

const dist = distFile;
const exec = (file: string, args: string[]) => runNode(file, args, { timeoutMs: 60_000 });
const opalCli = (...args: string[]) => exec(OPAL, args);
const version = (pkg: string) =>
  JSON.parse(readFileSync(new URL(`../../${pkg}/package.json`, import.meta.url), "utf8")).version;

describe.skipIf(!built)("opal, opal-mock and opal-conformance conventions", () => {
  let dir: string;
  let address: string;
  let mock: OpalMockProcess;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "opal-cli-conventions-"));
    mock = await startOpalMock(["opal-tiny", "llama-3-8b"]);
    address = mock.address;
  }, 30_000);
  afterAll(async () => {
    await mock.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("prints each package's version with --version", async () => {
    expect((await opalCli("--version")).stdout.trim()).toBe(version("cli"));
    const mockVersion = await exec(dist("mock", "opal-mock"), ["--version"]);
    expect(mockVersion.stdout.trim()).toBe(version("mock"));
    const conformance = await exec(dist("conformance", "opal-conformance"), ["-V"]);
    expect(conformance.stdout.trim()).toBe(version("conformance"));
  });

  it("marks required options and shows examples and the exit codes in --help", async () => {
    const prefill = await opalCli("prefill", "--help");
    expect(prefill.code).toBe(0);
    expect(prefill.stdout).toMatch(/--target <host:port>\s+the device[\s\S]*?\(required\)/);
    expect(prefill.stdout).toMatch(/--model <id>\s+[^\n]*\(required\)/);
    expect(prefill.stdout).toMatch(/Examples:\n {2}\$ opal prefill --target 127\.0\.0\.1:50051/);
    expect((await opalCli("--help")).stdout).toMatch(/Exit codes: 0 success, 1 failure, 2 usage/);
    const mockHelp = await exec(dist("mock", "opal-mock"), ["--help"]);
    expect(mockHelp.stdout).toMatch(/Examples:\n {2}\$ opal-mock --port 50051/);
  });

  it("exits 2 on usage errors; with --json the failure is JSON on stdout and stderr stays empty", async () => {
    const missing = await opalCli("prefill", "--target", address, "--prompt", "x");
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/required option '--model <id>' not specified/);
    expect((await opalCli("fly")).code).toBe(2);
    const json = await opalCli("prefill", "--json", "--target", address);
    expect(json.code).toBe(2);
    expect(json.stderr).toBe("");
    expect(JSON.parse(json.stdout)).toEqual({
      error: {
        code: "usage",
        exitCode: 2,
        reason: "",
        field: "",
        message: "required option '--model <id>' not specified",
      },
    });
  });

  it("prints a device's error with its reason and field path, exit 64 + code (67)", async () => {
    const args = ["prefill", "--target", address, "--model", "opal-tiny", "--prompt", "hi"];
    const out = ["--out", join(dir, "x.okv"), "--block-size", "17"];
    const text = await opalCli(...args, ...out);
    expect(text.code).toBe(67);
    expect(text.stderr).toMatch(/^opal: \[invalid_argument\] /);
    expect(text.stderr).toContain("\n  reason: UNSUPPORTED_BLOCK_SIZE\n");
    expect(text.stderr).toMatch(/\n {2}field kv_format\.block_size_tokens: .*17/);
    const json = await opalCli(...args, ...out, "--json");
    expect(json.code).toBe(67);
    expect(json.stderr).toBe("");
    expect(JSON.parse(json.stdout).error).toMatchObject({
      code: "invalid_argument",
      exitCode: 67,
      reason: "UNSUPPORTED_BLOCK_SIZE",
      field: "kv_format.block_size_tokens",
    });
  });

  it("says in its own words that a target cannot be reached (exit 78)", async () => {
    const dead = await opalCli("device", "info", "--target", "127.0.0.1:1");
    expect(dead.code).toBe(78);
    expect(dead.stderr).toContain(
      "opal: [unavailable] cannot reach a device at 127.0.0.1:1: connection refused",
    );
    expect(dead.stderr).not.toMatch(/No connection established|Last error/);
  });

  it("shows a device's info, capabilities, models and health", async () => {
    const info = await opalCli("device", "info", "--target", address);
    expect(info.stdout).toMatch(/^protocolVersion: 1\.0\.0$/m);
    const capabilities = JSON.parse(
      (await opalCli("device", "capabilities", "--target", address, "--json")).stdout,
    );
    expect(capabilities.blockSizesTokens).toContain(16);
    const models = await opalCli("device", "models", "--target", address);
    expect(models.stdout).toMatch(/^opal-tiny {2}LlamaForCausalLM, 2 layers/m);
    expect((await opalCli("device", "health", "--target", address)).stdout.trim()).toBe("ready");
  });

  it("loads a Hugging Face folder once (a second load changes nothing) and prefills with it", async () => {
    const folder = join(dir, "my-tiny");
    await exportHfCheckpoint(createPresetWeights("opal-tiny", { seed: 7 }), folder);
    const first = await opalCli("load", "--target", address, folder, "--json");
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ modelId: "my-tiny", alreadyLoaded: false });
    const again = await opalCli("load", "--target", address, folder);
    expect(again.stdout).toContain("my-tiny is already loaded");
    expect((await opalCli("device", "models", "--target", address)).stdout).toMatch(/^my-tiny /m);
    const prefill = await opalCli(
      ...["prefill", "--target", address, "--model", "my-tiny", "--prompt", "hi"],
      ...["--out", join(dir, "my.okv"), "--json"],
    );
    expect(prefill.code, prefill.stderr).toBe(0);
    const missing = await opalCli("load", "--target", address, join(dir, "nope"));
    expect(missing.code).toBe(69);
    expect(missing.stderr).toContain("is not a folder (expected a Hugging Face checkpoint folder)");
  });

  it("tokenizes --prompt with the model's tokenizer.json when given, bytes otherwise", async () => {
    // A word-level tokenizer.json in Hugging Face's format, BOS (256, as opal-tiny's) prepended.
    const bos = { id: "<s>", type_id: 0 };
    const tokenizer = {
      version: "1.0",
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: { type: "Whitespace" },
      post_processor: {
        type: "TemplateProcessing",
        single: [{ SpecialToken: bos }, { Sequence: { id: "A", type_id: 0 } }],
        pair: [],
        special_tokens: { "<s>": { id: "<s>", ids: [256], tokens: ["<s>"] } },
      },
      decoder: null,
      model: { type: "WordLevel", vocab: { "<s>": 256, hello: 5, OPAL: 7 }, unk_token: "[UNK]" },
    };
    const file = join(dir, "tokenizer.json");
    writeFileSync(file, JSON.stringify(tokenizer));
    let outputs = 0; // one output file a run: an existing one is refused (--force replaces it)
    const prefill = (...extra: string[]) =>
      opalCli(
        ...["prefill", "--target", address, "--model", "opal-tiny", "--json"],
        ...["--out", join(dir, `t-${outputs++}.okv`), ...extra],
      );
    const words = await prefill("--prompt", "hello OPAL", "--tokenizer", file);
    expect(words.code, words.stdout).toBe(0);
    expect(JSON.parse(words.stdout).promptTokens).toBe(3);
    const bytes = await prefill("--prompt", "hello OPAL");
    expect(JSON.parse(bytes.stdout).promptTokens).toBe(11);
    // Bytes for a model with another vocabulary: done, with a note naming --tokenizer.
    const other = await opalCli(
      ...["prefill", "--target", address, "--model", "llama-3-8b", "--prompt", "hi"],
      ...["--out", join(dir, "l.okv")],
    );
    expect(other.code, other.stderr).toBe(0);
    expect(other.stderr).toContain(
      "note: --prompt is tokenized as UTF-8 bytes, but llama-3-8b has a vocabulary of 128256 (not 258); pass its tokenizer.json with --tokenizer",
    );
    const unknown = await prefill("--prompt", "hello moon", "--tokenizer", file);
    expect(unknown.code).toBe(67);
    expect(JSON.parse(unknown.stdout).error.message).toContain('has no id for "moon"');
  });
});
