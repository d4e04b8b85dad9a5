/**
 * Load: 200 concurrent prefill streams against ONE mock device served in a child process
 * (`opal-mock --profile instant --max-concurrent 8 --max-queued 64`). The only failure allowed is
 * the documented back-pressure, RESOURCE_EXHAUSTED with RetryInfo, which the client honours and
 * retries; anything else counts as an unexpected failure (max 0). Records p50/p99 latency (from the
 * first attempt to the verified cache, back-pressure waits included), throughput, and checks every
 * delivered cache against a fault-free in-process reference. A second scenario holds each slot
 * 25 ms (the mock's stall fault, as a slow transfer would) so that the 200 streams overflow the
 * device's 8 slots and 64 queue places and the back-pressure path is exercised.
 * Run: node --conditions=source --import tsx packages/client/bench/load.bench.ts
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, isOpalError, sleep } from "@opal/core";
import type { PrefillRequest } from "@opal/driver";
import { digestKvCache, toHex } from "@opal/kv";
import { createMockDevice } from "@opal/mock";
import { startListeningProcess } from "@opal/testing";
import { createDeviceClient } from "../src/device-client/create-device-client";
import { startPrefill } from "../src/prefill/start-prefill";
import { reportFigure } from "../test/reliability/bench-report";

const STREAMS = 200;
const PREFILLS_PER_STREAM = 5;
const HELD_PER_STREAM = 2;
const PROMPTS = 8;
const PROMPT_TOKENS = 64;
const root = fileURLToPath(new URL("../../../", import.meta.url));

const prompt = (k: number) =>
  Uint32Array.from({ length: PROMPT_TOKENS }, (_, i) => (k * 29 + i * 5) % 258);
const request = (id: string, k: number): PrefillRequest => ({
  requestId: id,
  modelId: "opal-tiny",
  promptTokenIds: prompt(k),
  kvFormat: { dtype: "f32", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  maxChunkBytes: 16 * 1024,
});

/** Starts `opal-mock` in a child process; resolves with it and the address it printed. */
function startChildMock(
  extraArgs: readonly string[] = [],
): Promise<{ child: ChildProcess; address: string }> {
  return startListeningProcess(
    [
      "--conditions=source",
      "--import",
      "tsx",
      "packages/mock/bin/opal-mock.ts",
      "--port",
      "0",
      "--profile",
      "instant",
      "--model",
      "opal-tiny",
      "--max-concurrent",
      "8",
      "--max-queued",
      "64",
      ...extraArgs,
    ],
    { cwd: root },
  );
}

// Reference digests, fault-free and in process: every delivered cache must match its prompt's.
const reference = createMockDevice({ models: ["opal-tiny"] });
const expected: string[] = [];
for (let k = 0; k < PROMPTS; k++) {
  const outcome = await startPrefill(reference, request(`ref-${k}`, k)).result;
  expected.push(toHex(digestKvCache(outcome.receipt)));
}
await reference.close();

/** What one load scenario measured. */
interface LoadFigures {
  readonly completed: number;
  readonly seconds: number;
  readonly kvBytes: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly backPressure: number;
  readonly unexpected: number;
  readonly unexpectedKinds: ReadonlyMap<string, number>;
  readonly wrongBytes: number;
  readonly peakInFlight: number;
}

/** Runs STREAMS concurrent streams of `perStream` prefills each against a fresh child mock. */
async function runLoad(perStream: number, extraArgs: readonly string[] = []): Promise<LoadFigures> {
  const { child, address } = await startChildMock(extraArgs);
  const client = createDeviceClient(address);
  const latenciesMs: number[] = [];
  let backPressure = 0;
  let unexpected = 0;
  let wrongBytes = 0;
  let kvBytes = 0;
  let inFlight = 0;
  let peakInFlight = 0;
  const unexpectedKinds = new Map<string, number>();

  async function stream(s: number): Promise<void> {
    for (let r = 0; r < perStream; r++) {
      const k = (s + r) % PROMPTS;
      const started = performance.now();
      inFlight++;
      peakInFlight = Math.max(peakInFlight, inFlight);
      try {
        for (;;) {
          try {
            // One attempt per call: the retry below is the only one, and only for back-pressure.
            const outcome = await startPrefill(client, request(`load-${s}-${r}`, k), {
              timeoutMs: 60_000,
              retry: { maxAttempts: 1 },
            }).result;
            kvBytes += outcome.stats.kvTotalBytes;
            if (toHex(digestKvCache(outcome.receipt)) !== expected[k]) wrongBytes++;
            latenciesMs.push(performance.now() - started);
            break;
          } catch (error) {
            if (
              isOpalError(error) &&
              error.code === Code.RESOURCE_EXHAUSTED &&
              error.retryDelayMs !== undefined
            ) {
              backPressure++;
              await sleep(error.retryDelayMs * (1 + Math.random()));
              continue;
            }
            unexpected++;
            const kind = isOpalError(error) ? `${error.code}/${error.reason}` : String(error);
            unexpectedKinds.set(kind, (unexpectedKinds.get(kind) ?? 0) + 1);
            break;
          }
        }
      } finally {
        inFlight--;
      }
    }
  }

  const started = performance.now();
  try {
    await Promise.all(Array.from({ length: STREAMS }, (_, s) => stream(s)));
  } finally {
    await client.close();
    child.kill("SIGTERM");
  }
  const seconds = (performance.now() - started) / 1000;
  latenciesMs.sort((x, y) => x - y);
  const percentile = (p: number) =>
    latenciesMs[Math.min(latenciesMs.length - 1, Math.floor((p / 100) * latenciesMs.length))] ?? 0;
  return {
    completed: latenciesMs.length,
    seconds,
    kvBytes,
    p50Ms: percentile(50),
    p99Ms: percentile(99),
    backPressure,
    unexpected,
    unexpectedKinds,
    wrongBytes,
    peakInFlight,
  };
}

/** Prints a scenario as text (stderr) and as figures `reliability/<name>-*` (stdout). */
function report(name: string, title: string, perStream: number, f: LoadFigures): void {
  const kinds = [...f.unexpectedKinds].map(([k, n]) => `${k} ×${n}`).join(", ");
  console.error(
    [
      `${name}: ${title}`,
      `  completed ${f.completed} in ${f.seconds.toFixed(2)} s: ${(f.completed / f.seconds).toFixed(1)} prefills/s, ${(f.kvBytes / f.seconds / 1e6).toFixed(1)} MB/s of KV`,
      `  latency p50 ${f.p50Ms.toFixed(1)} ms, p99 ${f.p99Ms.toFixed(1)} ms (back-pressure waits included)`,
      `  back-pressure rejections (RESOURCE_EXHAUSTED + RetryInfo, retried) ${f.backPressure}`,
      `  unexpected failures ${f.unexpected}${kinds ? ` (${kinds})` : ""}`,
      `  wrong-bytes caches ${f.wrongBytes}, peak streams in flight ${f.peakInFlight}`,
    ].join("\n"),
  );
  const b = `reliability/${name}`;
  reportFigure(`${b}-p50`, "ms", f.p50Ms);
  reportFigure(`${b}-p99`, "ms", f.p99Ms);
  reportFigure(`${b}-throughput`, "prefills/s", f.completed / f.seconds);
  reportFigure(`${b}-kv-throughput`, "MB/s", f.kvBytes / f.seconds / 1e6);
  reportFigure(`${b}-completed`, "count", f.completed, { target: STREAMS * perStream });
  reportFigure(`${b}-concurrent-streams`, "count", f.peakInFlight, { target: STREAMS });
  reportFigure(`${b}-backpressure-retries`, "count", f.backPressure);
  reportFigure(`${b}-unexpected-failures`, "count", f.unexpected, { max: 0 });
  reportFigure(`${b}-wrong-bytes-caches`, "count", f.wrongBytes, { max: 0 });
}

// 1. The device as specified: `--profile instant`. Its compute is synchronous, so it admits a
// prefill only when its event loop is free; requests wait in its socket, not in its queue.
const plain = await runLoad(PREFILLS_PER_STREAM);
report(
  "load",
  `${STREAMS} concurrent streams × ${PREFILLS_PER_STREAM} prefills, one child-process mock (instant, 8 slots, 64 queued)`,
  PREFILLS_PER_STREAM,
  plain,
);

// 2. The same device holding each slot 25 ms after the first chunk (a slow transfer, via the
// stall fault): 200 streams overflow 8 slots + 64 queue places, so back-pressure must show.
const faults = join(mkdtempSync(join(tmpdir(), "opal-load-")), "hold.json");
writeFileSync(faults, JSON.stringify({ stallAfterChunks: 1, stallMs: 25 }));
const held = await runLoad(HELD_PER_STREAM, ["--faults", faults]);
rmSync(dirname(faults), { recursive: true, force: true });
report(
  "load-held",
  `${STREAMS} concurrent streams × ${HELD_PER_STREAM} prefills, slots held 25 ms each`,
  HELD_PER_STREAM,
  held,
);
const ok = [plain, held].every((f) => f.unexpected === 0 && f.wrongBytes === 0);
process.exitCode = ok && held.backPressure > 0 ? 0 : 1;
