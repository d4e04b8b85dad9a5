/**
 * The chaos run shared by `chaos.test.ts` (reduced count, in `npm test`) and
 * `bench/chaos.bench.ts` (full count): prefills through a pool of three served mock devices with
 * faults injected (errors, aborted streams, corrupt chunks, one device killed and restarted
 * mid-run), hostile requests mixed in, every delivered cache checked against an independent
 * reference, and every retained byte released at the end.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Code, isOpalError, type OpalError } from "@opal/core";
import type { DriverCallOptions, PrefillDriver, PrefillEvent, PrefillRequest } from "@opal/driver";
import { digestKvCache, toHex } from "@opal/kv";
import { createMockDevice, type FaultConfig, type MockServer, serveMockDevice } from "@opal/mock";
import { createDevicePool } from "../../src/pool/create-device-pool";
import { startPrefill } from "../../src/prefill/start-prefill";

/** Options of {@link runChaos}; every field documents its default. */
export interface ChaosOptions {
  /** Prefills to run (hostile ones included); default 150. */
  readonly prefills?: number;
  /** Prefills in flight at once; default 12. */
  readonly concurrency?: number;
  /** Every n-th request is hostile (out-of-vocabulary token or forged handle); default 25. */
  readonly hostileEvery?: number;
  /** Fraction of the run after which device 1 is killed and restarted; default 0.4. */
  readonly restartAt?: number;
  /** Deadline of each prefill, retries included, in ms; default 15,000. */
  readonly timeoutMs?: number;
  /**
   * The devices offer the shared-memory data plane (PF-43), which the pool's clients then use
   * (they are on this host); default false (inline).
   */
  readonly sharedMemory?: boolean;
}

/** What a chaos run measured. Every "must be zero" figure is named so. */
export interface ChaosFigures {
  readonly prefills: number;
  /** Faults the devices applied (errors, aborts, corrupt chunks) plus device kills. */
  readonly faultsInjected: number;
  readonly deviceRestarts: number;
  /** Well-formed requests that ended with a verified cache. */
  readonly completed: number;
  /** Well-formed requests that ended with a clear error (after the SDK's retries). */
  readonly failedClearly: number;
  /** Failures by `CODE/REASON`. */
  readonly failuresByKind: Readonly<Record<string, number>>;
  /** Hostile requests sent (all must fail). */
  readonly badInputsTried: number;
  /** Hostile requests that were served anyway: must be zero. */
  readonly badInputsAccepted: number;
  /** Failures that were not an `OpalError` with a known code and a reason: must be zero. */
  readonly unclearFailures: number;
  /** Delivered caches whose bytes differ from the fault-free reference: must be zero. */
  readonly wrongBytesDelivered: number;
  /** SDK attempts beyond the first, and streams resumed with FetchKv. */
  readonly retries: number;
  readonly resumes: number;
  /** Handles retained by abandoned attempts (not delivered), released at the end. */
  readonly orphanedHandlesReleased: number;
  /**
   * Bytes retained after every known handle was released: caches whose `accepted` (and handle)
   * never reached the client because the connection broke first; their lease frees them.
   */
  readonly unannouncedBytesFreedByLease: number;
  /** Bytes still retained on any device after every release and every lease expiry: must be zero. */
  readonly bytesLost: number;
  /** Prefills still running on any device at the end: must be zero. */
  readonly activePrefillsLeft: number;
  /** Heap growth between the first tenth of the run and its end, after GC, in MiB. */
  readonly heapGrowthMiB: number;
  readonly seconds: number;
  readonly prefillsPerSecond: number;
}

const MODEL = "opal-tiny";
const RETENTION_SECONDS = 60;
const VOCAB = 258;
const PROMPTS = 16;
const FORMAT = { dtype: "f32", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 } as const;

/** Prompt `k` of the run: 40..100 tokens, deterministic. */
function prompt(k: number): Uint32Array {
  const length = 40 + ((k * 17) % 61);
  return Uint32Array.from({ length }, (_, i) => (k * 31 + i * 7 + ((i * i) % 13)) % VOCAB);
}

/** Faults of device `i`: 10% Prefill and FetchKv errors, 10% aborted, 10% corrupt streams. */
function faultsOf(i: number): FaultConfig {
  return {
    seed: 1000 + i,
    errors: { Prefill: { rate: 0.1 }, FetchKv: { rate: 0.1 } },
    abortAfterChunks: 5,
    abortRate: 0.1,
    corruptChunk: 3,
    corruptRate: 0.1,
  };
}

/** A garbage-collected heap measurement in bytes (GC exposed at run time when it is not already). */
function heapAfterGc(): number {
  const global = globalThis as { gc?: () => void };
  if (!global.gc) {
    setFlagsFromString("--expose-gc");
    global.gc = runInNewContext("gc") as () => void;
  }
  global.gc();
  global.gc();
  return process.memoryUsage().heapUsed;
}

/** Wraps `driver` so that every KV handle it hands out is recorded (to release orphans later). */
function recordingHandles(driver: PrefillDriver, handles: Set<string>): PrefillDriver {
  return {
    ...driver,
    async *prefill(request: PrefillRequest, call?: DriverCallOptions) {
      for await (const event of driver.prefill(request, call) as AsyncIterable<PrefillEvent>) {
        if (event.type === "accepted" && event.kvHandle) handles.add(event.kvHandle);
        yield event;
      }
    },
  };
}

/** A failure is clear when it is an `OpalError` with a known, non-UNKNOWN code and a reason. */
function isClear(error: unknown): error is OpalError {
  return isOpalError(error) && error.code !== Code.UNKNOWN && error.code !== Code.OK;
}

/**
 * Runs the chaos scenario and returns its figures; the caller asserts and prints them. Starts and
 * stops its own devices; leaves nothing running.
 */
export async function runChaos(options: ChaosOptions = {}): Promise<ChaosFigures> {
  const total = options.prefills ?? 150;
  const concurrency = options.concurrency ?? 12;
  const hostileEvery = options.hostileEvery ?? 25;
  const restartAt = Math.floor(total * (options.restartAt ?? 0.4));
  const timeoutMs = options.timeoutMs ?? 15_000;

  // Reference digests from a fault-free in-process device: independent of the pool, the network
  // and the SDK's own verification.
  const reference = createMockDevice({ models: [MODEL] });
  const expected: string[] = [];
  for (let k = 0; k < PROMPTS; k++) {
    const outcome = await startPrefill(reference, {
      requestId: `ref-${k}`,
      modelId: MODEL,
      promptTokenIds: prompt(k),
      kvFormat: FORMAT,
    }).result;
    expected.push(toHex(digestKvCache(outcome.receipt)));
  }
  await reference.close();

  // The devices' lease clock: moved past every lease at the end, to free what no handle reached.
  let clockSkewMs = 0;
  const now = () => Date.now() + clockSkewMs;
  const mocks: MockServer[] = [];
  for (let i = 0; i < 3; i++) {
    mocks.push(
      await serveMockDevice(
        { models: [MODEL], deviceId: `chaos-${i}`, faults: faultsOf(i), now },
        { shutdownGraceMs: 0, sharedMemory: options.sharedMemory ?? false },
      ),
    );
  }
  const handles = new Set<string>();
  const pool = await createDevicePool(
    mocks.map((m) => m.address),
    { routing: "least-loaded", openMs: 200, failureThreshold: 3, maxInFlightPerDevice: 8 },
  );
  const driver = recordingHandles(pool, handles);

  let completed = 0;
  let failedClearly = 0;
  let unclear = 0;
  let wrongBytes = 0;
  let badTried = 0;
  let badAccepted = 0;
  let retries = 0;
  let resumes = 0;
  let restarts = 0;
  const failuresByKind: Record<string, number> = {};
  const delivered = new Set<string>();
  let heapEarly = 0;
  let next = 0;
  let finished = 0;
  const started = performance.now();

  async function one(i: number): Promise<void> {
    const k = i % PROMPTS;
    const hostile = hostileEvery > 0 && i % hostileEvery === hostileEvery - 1;
    if (hostile) {
      badTried++;
      const accepted =
        (i / hostileEvery) % 2 < 1
          ? // A token past the vocabulary: INVALID_ARGUMENT TOKEN_OUT_OF_RANGE, never a cache.
            await startPrefill(
              driver,
              {
                requestId: `chaos-bad-${i}`,
                modelId: MODEL,
                promptTokenIds: Uint32Array.from([...prompt(k).subarray(0, 20), VOCAB + i]),
                kvFormat: FORMAT,
              },
              { timeoutMs, retry: { initialBackoffMs: 5, maxBackoffMs: 50 } },
            ).result.then(
              () => true,
              (error: unknown) => !isClear(error),
            )
          : // A forged handle on a real device: NOT_FOUND, never bytes.
            await (async () => {
              try {
                for await (const _ of driver.fetchKv(
                  { kvHandle: `${encodeURIComponent(mocks[i % 3]!.address)}|forged-${i}` },
                  { timeoutMs },
                ))
                  return true;
                return true;
              } catch (error) {
                return !isClear(error);
              }
            })();
      if (accepted) badAccepted++;
      return;
    }
    const run = startPrefill(
      driver,
      {
        requestId: `chaos-${i}`,
        modelId: MODEL,
        promptTokenIds: prompt(k),
        kvFormat: FORMAT,
        maxChunkBytes: 1024,
        retentionSeconds: RETENTION_SECONDS,
        cacheSalt: `tenant-${i % 2}`,
      },
      { timeoutMs, retry: { maxAttempts: 4, initialBackoffMs: 5, maxBackoffMs: 50 } },
    );
    try {
      const outcome = await run.result;
      completed++;
      retries += outcome.transfer.attempts - 1;
      resumes += outcome.transfer.resumes;
      if (toHex(digestKvCache(outcome.receipt)) !== expected[k]) wrongBytes++;
      delivered.add(outcome.kvHandle);
      // The decoder committed it: release now (RT-19).
      await pool.releaseKv(outcome.kvHandle, { timeoutMs: 5_000 }).catch(() => {});
    } catch (error) {
      if (!isClear(error)) {
        unclear++;
        return;
      }
      failedClearly++;
      const kind = `${Object.keys(Code).find((n) => Code[n as keyof typeof Code] === error.code)}/${error.reason || "-"}`;
      failuresByKind[kind] = (failuresByKind[kind] ?? 0) + 1;
    }
  }

  async function worker(): Promise<void> {
    for (;;) {
      const i = next++;
      if (i >= total) return;
      if (i === restartAt) {
        // One device killed and restarted mid-run: its open streams break, its channel reconnects.
        restarts++;
        await mocks[1]!.restart();
      }
      await one(i);
      finished++;
      if (finished === Math.ceil(total / 10)) heapEarly = heapAfterGc();
    }
  }
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
    const seconds = (performance.now() - started) / 1000;

    // Release everything still retained: the orphans of abandoned attempts (a retry elsewhere,
    // a break after which the SDK retried instead of resuming), then check nothing is left.
    let orphans = 0;
    for (const handle of handles) {
      if (delivered.has(handle)) continue;
      const { released } = await pool
        .releaseKv(handle, { timeoutMs: 5_000 })
        .catch(() => ({ released: false }));
      if (released) orphans++;
    }
    // Injected ReleaseKv errors do not exist in this run (no `errors.ReleaseKv`), so every
    // release reached its device.
    await until(() => mocks.every((m) => m.device.stats.activePrefills === 0), 5_000);
    const retained = () => mocks.reduce((sum, m) => sum + m.device.stats.retainedKvBytes, 0);
    // Caches retained by an attempt whose `accepted` never reached the client (the connection
    // broke first): no handle names them, so only their lease frees them.
    const unannouncedBytes = retained();
    clockSkewMs = (RETENTION_SECONDS + 1) * 1000;
    const bytesLost = retained();
    const activeLeft = mocks.reduce((sum, m) => sum + m.device.stats.activePrefills, 0);
    const heapEnd = heapAfterGc();
    return {
      prefills: total,
      faultsInjected: mocks.reduce((sum, m) => sum + m.device.stats.faultsInjected, 0) + restarts,
      deviceRestarts: restarts,
      completed,
      failedClearly,
      failuresByKind,
      badInputsTried: badTried,
      badInputsAccepted: badAccepted,
      unclearFailures: unclear,
      wrongBytesDelivered: wrongBytes,
      retries,
      resumes,
      orphanedHandlesReleased: orphans,
      unannouncedBytesFreedByLease: unannouncedBytes,
      bytesLost,
      activePrefillsLeft: activeLeft,
      heapGrowthMiB: Math.round(((heapEnd - heapEarly) / 1024 / 1024) * 100) / 100,
      seconds: Math.round(seconds * 100) / 100,
      prefillsPerSecond: Math.round((total / seconds) * 10) / 10,
    };
  } finally {
    await pool.close();
    for (const m of mocks) await m.close({ graceMs: 0 });
  }
}

async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check() && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 20));
}

/** The figures as the plain text block printed at the end of a run. */
export function formatChaosFigures(figures: ChaosFigures): string {
  const kinds = Object.entries(figures.failuresByKind)
    .map(([kind, n]) => `${kind} ×${n}`)
    .join(", ");
  return [
    `chaos: ${figures.prefills} prefills through 3 mock devices in ${figures.seconds} s (${figures.prefillsPerSecond}/s)`,
    `  faults injected            ${figures.faultsInjected} (incl. ${figures.deviceRestarts} device kill+restart)`,
    `  requests completed         ${figures.completed} (retries ${figures.retries}, resumes ${figures.resumes})`,
    `  failed with clear errors   ${figures.failedClearly}${kinds ? ` (${kinds})` : ""}`,
    `  unclear failures           ${figures.unclearFailures}`,
    `  wrong-bytes caches         ${figures.wrongBytesDelivered}`,
    `  bad inputs tried           ${figures.badInputsTried} (accepted: ${figures.badInputsAccepted})`,
    `  orphan handles released    ${figures.orphanedHandlesReleased}`,
    `  unannounced, lease-freed   ${figures.unannouncedBytesFreedByLease} bytes`,
    `  bytes lost                 ${figures.bytesLost}`,
    `  active prefills left       ${figures.activePrefillsLeft}`,
    `  heap growth                ${figures.heapGrowthMiB} MiB`,
  ].join("\n");
}
