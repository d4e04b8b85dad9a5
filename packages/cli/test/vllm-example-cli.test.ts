import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExitCode } from "@opal/core";
import {
  decodeSafetensors,
  encodeSafetensors,
  fromFloat32,
  toFloat32,
  vllmExampleFolderName,
  vllmLayerName,
} from "@opal/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { built, type OpalMockProcess, opalCli, startOpalMock } from "./cli-harness";

/** 32 tokens = 2 blocks of 16: vLLM checks the 16-token folder, then loads the 32-token one. */
const TOKENS = Array.from({ length: 32 }, (_, i) => 40 + i);

describe.skipIf(!built)("opal prefill --format vllm-example and opal inspect", () => {
  let dir: string;
  let address: string;
  let mock: OpalMockProcess;
  let tokensFile: string;
  const prefill = (out: string, ...extra: string[]) =>
    opalCli([
      "prefill",
      "--target",
      address,
      "--model",
      "opal-tiny",
      "--tokens-file",
      tokensFile,
      "--out",
      out,
      "--json",
      ...extra,
    ]);
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "opal-cli-vllm-"));
    tokensFile = join(dir, "tokens.json");
    writeFileSync(tokensFile, JSON.stringify(TOKENS));
    mock = await startOpalMock();
    address = mock.address;
  }, 30_000);
  afterAll(async () => {
    expect(await mock.stop()).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  });

  it("writes the folder vLLM >= 0.29 checks and the one it loads; inspect names the version and layout", async () => {
    const out = join(dir, "v029");
    const result = await prefill(out, "--format", "vllm-example");
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout);
    expect(summary.vllm).toMatchObject({
      vllmVersion: "0.29",
      checkFolder: join(out, vllmExampleFolderName(TOKENS.slice(0, 16))),
      checkTokens: 16,
      loadFolder: join(out, vllmExampleFolderName(TOKENS)),
      loadTokens: 32,
    });
    expect(readdirSync(out).sort()).toEqual(
      [vllmExampleFolderName(TOKENS.slice(0, 16)), vllmExampleFolderName(TOKENS)].sort(),
    );
    const inspected = await opalCli(["inspect", out]);
    expect(inspected.code, inspected.stderr).toBe(0);
    expect(inspected.stdout).toContain("vLLM ExampleConnector storage path, 2 prompt folders");
    expect(inspected.stdout).toContain("32 tokens; fits vLLM >= 0.29 [T, H, C]");
    expect(inspected.stdout).toContain(
      "fits vLLM >= 0.29 [T, H, C]: 32 tokens, 2 KV heads of head size 16",
    );
    const folder = JSON.parse(
      (await opalCli(["inspect", join(out, vllmExampleFolderName(TOKENS)), "--json"])).stdout,
    );
    expect(folder.format).toBe("vllm-example");
    expect(folder.details.fits).toEqual([
      {
        vllmVersion: "0.29",
        attention: { kind: "mha", numKvHeads: 2, headDim: 16 },
        tokenCount: 32,
        shapeName: "[T, H, C]",
      },
    ]);
  });

  it("fp8 for vLLM 0.28: bf16 from the device, quantised with the static per-layer scales, written as U8", async () => {
    const reference = join(dir, "ref.safetensors");
    expect((await prefill(reference, "--format", "safetensors")).code).toBe(0);
    const bf16 = decodeSafetensors(new Uint8Array(readFileSync(reference)));
    const out = join(dir, "fp8");
    const result = await prefill(
      out,
      "--format",
      "vllm-example",
      "--vllm-version",
      "0.28",
      "--dtype",
      "fp8_e4m3fn",
      "--k-scale",
      "0.5,0.25",
      "--v-scale",
      "2",
    );
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout).vllm.dtype).toBe(
      "fp8_e4m3fn as U8, k_scale 0.5,0.25, v_scale 2",
    );
    const kScales = [0.5, 0.25];
    for (let layer = 0; layer < 2; layer++) {
      const file = join(out, vllmExampleFolderName(TOKENS), `${vllmLayerName(layer)}.safetensors`);
      const tensor = decodeSafetensors(new Uint8Array(readFileSync(file))).tensors.get("kv_cache")!;
      expect(tensor.dtype).toBe("U8");
      expect(tensor.shape).toEqual([2, 32, 32]);
      const [k, v] = (["k", "v"] as const).map((part) => {
        const scale = part === "k" ? (kScales[layer] as number) : 2;
        const values = toFloat32(bf16.tensors.get(`layers.${layer}.${part}`)!.data, "bf16");
        return fromFloat32(
          values.map((x) => x / scale),
          "fp8_e4m3fn",
          { saturate: true },
        );
      });
      expect(Buffer.compare(tensor.data.subarray(0, 32 * 32), k!)).toBe(0);
      expect(Buffer.compare(tensor.data.subarray(32 * 32), v!)).toBe(0);
    }
    const inspected = await opalCli(["inspect", join(out, vllmExampleFolderName(TOKENS))]);
    expect(inspected.stdout).toContain("fits vLLM <= 0.28 [2, T, H*D]");
    expect(inspected.stdout).toContain("U8: vLLM's fp8 cache");
    // [2, 32, 32] alone also reads as a vLLM >= 0.29 file of 2 tokens and 32 heads; inspect says so.
    expect(inspected.stdout).toContain("both vLLM versions read this shape");
    // The storage path's two folders (16 and 32 tokens) agree only on the <= 0.28 reading.
    const storage = await opalCli(["inspect", out]);
    expect(storage.code, storage.stderr).toBe(0);
    expect(storage.stdout).toContain(
      "storage path, 2 prompt folders; fits vLLM <= 0.28 [2, T, H*D]\n",
    );
    expect(storage.stdout).not.toContain("vLLM >= 0.29");
  });

  it("refuses what a vLLM decoder cannot load, saying why", async () => {
    const tp = await prefill(
      join(dir, "tp"),
      "--format",
      "vllm-example",
      "--tensor-parallel-size",
      "2",
    );
    // With --json a failure is a JSON error on stdout: code, reason, field and message.
    const failure = (run: { stdout: string }) =>
      (JSON.parse(run.stdout) as { error: { code: string; message: string } }).error;
    expect(tp.code).toBe(ExitCode.FAILED_PRECONDITION);
    expect(failure(tp).message).toMatch(/no TP rank/);
    expect(existsSync(join(dir, "tp"))).toBe(false);
    const scales = await prefill(join(dir, "s"), "--format", "vllm-example", "--k-scale", "0.5");
    expect(scales.code).toBe(ExitCode.USAGE);
    expect(failure(scales).message).toMatch(/static scales of vLLM's fp8 cache/);
    const badScale = await prefill(join(dir, "s"), "--dtype", "fp8_e4m3fn", "--k-scale", "0,1");
    expect(failure(badScale).message).toMatch(/--k-scale takes one scale or one per layer/);
  });

  it("inspects SGLang buffers, LMCache chunks and vLLM pools saved as safetensors", async () => {
    const sglang = join(dir, "sglang.safetensors");
    const lmcache = join(dir, "lmcache");
    expect((await prefill(sglang, "--format", "sglang")).code).toBe(0);
    expect((await prefill(lmcache, "--format", "lmcache")).code).toBe(0);
    const s = await opalCli(["inspect", sglang]);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stdout).toContain("SGLang token-major KV buffers");
    expect(s.stdout).toContain(
      "k_buffer.0: [33, 2, 16] BF16: 32 tokens in slots 1..32, 2 heads × 16",
    );
    const l = JSON.parse((await opalCli(["inspect", lmcache, "--json"])).stdout);
    expect(l.format).toBe("lmcache");
    expect(l.details.kvBytes).toBe(32 * 2 * 2 * 16 * 2 * 2);
    const okv = join(dir, "same.okv");
    await prefill(okv);
    const digest = JSON.parse((await opalCli(["inspect", okv, "--json"])).stdout).digest;
    expect(l.details.digest).toBe(digest);
    const pool = join(dir, "pool.safetensors");
    const data = new Uint8Array(2 * 4 * 16 * 2 * 16 * 2);
    writeFileSync(
      pool,
      encodeSafetensors([
        ["layer0", { dtype: "BF16", shape: [2, 4, 16, 2, 16], data }],
        ["layer1", { dtype: "U8", shape: [4, 2, 16, 32], data: data.subarray(0, 4 * 2 * 16 * 32) }],
      ]),
    );
    const p = await opalCli(["inspect", pool]);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toContain(
      "fits vLLM <= 0.28 FlashAttention (2, num_blocks, block_size, num_kv_heads, head_size)",
    );
    expect(p.stdout).toContain("layer1: [4, 2, 16, 32] U8 (fp8 cache)");
    expect(p.stdout).toContain(
      "fits vLLM >= 0.29 standardized view [num_blocks, num_kv_heads, block_size, C]",
    );
    const junk = join(dir, "junk.safetensors");
    writeFileSync(
      junk,
      encodeSafetensors([["x", { dtype: "F32", shape: [3], data: new Uint8Array(12) }]]),
    );
    const bad = await opalCli(["inspect", junk]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/without an OPAL descriptor, and tensor x \[3\] fits no vLLM pool/);
  });
});
