import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type MockServer, serveMockDevice } from "@opal/mock";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Every ```ts / ```typescript block of the integrator guide is type-checked against the current
// public API, each as its own module, in one TypeScript program with the repository's compiler
// options. The snippets are written inside the repository so `@opal/*` resolve through the
// workspace (node_modules symlinks, the `source` export condition), as they do for the tests.
// Convention (stated at the top of the guide): a snippet imports what it uses and declares what
// the host application supplies with `declare const`; nothing is skipped or prepended.
// Then every block runs, in order, against a mock device served with `opal-mock`'s defaults (profile
// iris-nova, model opal-tiny, 127.0.0.1): the only changes are the port (the guide's 50051 becomes
// the mock's free port) and each `declare const` becoming a value the test supplies (FIXTURES).

const root = fileURLToPath(new URL("../../../", import.meta.url));
const guidePath = join(root, "docs/guides/integrator.md");
const snippetDir = fileURLToPath(new URL(`./.guide-snippets-${process.pid}/`, import.meta.url));

interface Snippet {
  /** 1-based, in order of appearance. */
  readonly index: number;
  /** 1-based line of integrator.md holding the snippet's first line of code. */
  readonly firstLine: number;
  readonly code: string;
}

/** Fenced blocks whose info string's first word is `ts` or `typescript`. */
function extractSnippets(markdown: string): Snippet[] {
  const lines = markdown.split(/\r?\n/);
  const snippets: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^( {0,3})(`{3,}|~{3,})\s*([^\s`]*)/.exec(lines[i] ?? "");
    if (!open) continue;
    const [, indent = "", fence = "", lang = ""] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const line = lines[j] ?? "";
      const close = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(line)?.[1] ?? "";
      if (close[0] === fence[0] && close.length >= fence.length) break;
      // Content of an indented fence loses up to as many leading spaces as the fence had.
      body.push(line.replace(new RegExp(`^ {0,${indent.length}}`), ""));
    }
    if (lang === "ts" || lang === "typescript") {
      snippets.push({ index: snippets.length + 1, firstLine: i + 2, code: `${body.join("\n")}\n` });
    }
    i = j;
  }
  return snippets;
}

function compilerOptions(): ts.CompilerOptions {
  const base = ts.readConfigFile(join(root, "tsconfig.base.json"), ts.sys.readFile);
  if (base.error) throw new Error(ts.flattenDiagnosticMessageText(base.error.messageText, "\n"));
  const { options, errors } = ts.convertCompilerOptionsFromJson(base.config.compilerOptions, root);
  if (errors.length > 0) {
    throw new Error(errors.map((e) => ts.flattenDiagnosticMessageText(e.messageText, "\n")).join());
  }
  return {
    ...options,
    noEmit: true,
    skipLibCheck: true,
    declaration: false,
    sourceMap: false,
    // Each snippet is a module (top-level await, its own scope) even without import or export.
    moduleDetection: ts.ModuleDetectionKind.Force,
  };
}

afterAll(() => rmSync(snippetDir, { recursive: true, force: true }));

describe("docs/guides/integrator.md", () => {
  const snippets = extractSnippets(readFileSync(guidePath, "utf8"));

  it("shows embedding the SDK in a router and handing caches to vLLM's paged KV pool", () => {
    const all = snippets.map((s) => s.code).join("\n");
    expect(all).toMatch(/\bcreateDevicePool\(/);
    expect(all).toMatch(/\bcreateVllmPagedSink\(/);
  });

  it("every TypeScript snippet type-checks against the current API", () => {
    expect(snippets.length).toBeGreaterThan(0);
    mkdirSync(snippetDir, { recursive: true });
    const files = new Map<string, Snippet>();
    for (const snippet of snippets) {
      const file = join(snippetDir, `snippet-${snippet.index}.ts`);
      writeFileSync(file, snippet.code);
      files.set(ts.sys.resolvePath(file), snippet);
    }
    const options = compilerOptions();
    const host = ts.createCompilerHost(options);
    host.getCurrentDirectory = () => root;
    const program = ts.createProgram({ rootNames: [...files.keys()], options, host });

    const problems: string[] = program
      .getOptionsDiagnostics()
      .concat(program.getGlobalDiagnostics())
      .map((d) => `compiler: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
    for (const source of program.getSourceFiles()) {
      const snippet = files.get(ts.sys.resolvePath(source.fileName));
      if (!snippet) continue;
      const diagnostics = [
        ...program.getSyntacticDiagnostics(source),
        ...program.getSemanticDiagnostics(source),
      ];
      for (const d of diagnostics) {
        const line = d.start === undefined ? 0 : source.getLineAndCharacterOfPosition(d.start).line;
        const message = ts.flattenDiagnosticMessageText(d.messageText, "\n");
        problems.push(
          `snippet ${snippet.index} (line ${snippet.firstLine + line} of integrator.md): TS${d.code} ${message}`,
        );
      }
    }
    expect(problems.join("\n")).toBe("");
  });
});

/** What the host application supplies to the snippets (their `declare const`s), for opal-tiny. */
const loadedLayers: number[] = [];
const BLOCK = 16;
const NUM_BLOCKS = 4;
/**
 * opal-tiny: 2 layers, 2 KV heads of 16. vLLM >= 0.29's LBNHC allocation in bf16: logical
 * [L, B, H, N, C] with C = 16 + 16 elements; each layer's [B, H, N, C] view has element strides
 * [N*H*C, C, H*C, 1] = [1024, 32, 64, 1].
 */
const FIXTURES: Record<string, unknown> = {
  tokens: [256, 72, 101, 108, 108, 111],
  tenantId: "tenant-a",
  decoder: { loadLayer: (layer: number) => loadedLayers.push(layer) },
  promptTokenIds: Uint32Array.of(256, 72, 101, 108, 108, 111),
  allocation: new Uint8Array(2 * NUM_BLOCKS * BLOCK * 2 * 32 * 2),
  numLayers: 2,
  layerShape: [NUM_BLOCKS, 2, BLOCK, 32],
  layerStride: [BLOCK * 2 * 32, 32, 2 * 32, 1],
  numBlocks: NUM_BLOCKS,
  blockTable: Int32Array.of(2),
  numKvHeads: 2,
  headSize: 16,
  // 32 tokens: vLLM's ExampleConnector stores whole 16-token blocks.
  decoderPromptTokenIds: Uint32Array.from({ length: 32 }, (_, i) => 65 + i),
  sharedStoragePath: join(snippetDir, "shared-storage"),
};

/** The snippet as the test runs it: the mock's port for 50051, FIXTURES for `declare const`s. */
function runnable(code: string, port: number): string {
  const declared = /^declare const (\w+)\s*:[^;]*;.*$/gm;
  return code
    .replace(declared, (_, name: string) => {
      if (!(name in FIXTURES)) throw new Error(`no fixture for declare const ${name}`);
      return `const ${name} = (globalThis as never as { opalGuide: Record<string, never> }).opalGuide.${name};`;
    })
    .replaceAll(":50051", `:${port}`);
}

describe("docs/guides/integrator.md against a default mock device", () => {
  let mock: MockServer;
  beforeAll(async () => {
    mock = await serveMockDevice(
      { profile: "iris-nova", models: ["opal-tiny"] },
      { host: "127.0.0.1", port: 0 },
    );
    (globalThis as { opalGuide?: unknown }).opalGuide = FIXTURES;
  });
  afterAll(async () => {
    await mock?.close({ graceMs: 0 });
    delete (globalThis as { opalGuide?: unknown }).opalGuide;
  });

  it("every TypeScript snippet runs as written", async () => {
    const snippets = extractSnippets(readFileSync(guidePath, "utf8"));
    expect(readFileSync(guidePath, "utf8")).toContain("npx opal-mock");
    mkdirSync(snippetDir, { recursive: true });
    const port = Number(mock.address.split(":").pop());
    for (const snippet of snippets) {
      const file = join(snippetDir, `run-${snippet.index}.ts`);
      writeFileSync(file, runnable(snippet.code, port));
      await expect(
        import(file),
        `snippet ${snippet.index} (line ${snippet.firstLine} of integrator.md)`,
      ).resolves.toBeDefined();
    }
    // The first snippet fed the decoder every layer of opal-tiny; the vLLM one filled block 2.
    expect(loadedLayers).toEqual([0, 1]);
    const allocation = FIXTURES.allocation as Uint8Array;
    const blockBytes = BLOCK * 2 * 32 * 2;
    expect(allocation.subarray(2 * blockBytes, 3 * blockBytes).some((b) => b !== 0)).toBe(true);
    expect(allocation.subarray(0, 2 * blockBytes).every((b) => b === 0)).toBe(true);
    // The ExampleConnector one wrote the folder vLLM checks (16 tokens) and the one it loads (32).
    expect(readdirSync(FIXTURES.sharedStoragePath as string)).toHaveLength(2);
  }, 60_000);
});
