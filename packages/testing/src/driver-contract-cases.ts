import { Code } from "@opal/core";
import type { PrefillRequest } from "@opal/driver";
import { digestKvCache, fromKvParts, type KvChunk } from "@opal/kv";
import { expect, type TestContext } from "vitest";
import { collectPrefill } from "./collect-prefill";
import type { ContractSubject } from "./contract-subject";
import { expectOpalError } from "./expect-opal-error";

/** One behavioural test of the driver contract. */
export interface DriverContractCase {
  /** The test's name under `describe("driver contract: <subject>")`. */
  readonly name: string;
  /** Runs the test against `subject`; `ctx` is vitest's context (to skip). */
  run(subject: ContractSubject, ctx: TestContext): Promise<void>;
}

async function drain(events: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of events) {
    // consume
  }
}

let requestCounter = 0;

/**
 * A valid prefill request for `subject`'s model (40 tokens, bf16 NHD in 16-token blocks, 256-byte
 * chunks), with a request id unique to this process, and `patch` applied.
 */
function toContractRequest(
  subject: ContractSubject,
  patch: Partial<PrefillRequest> = {},
): PrefillRequest {
  return {
    requestId: `contract-${process.pid}-${++requestCounter}`,
    modelId: subject.modelId,
    promptTokenIds: Uint32Array.from({ length: 40 }, (_, i) => (i * 7 + 3) % 60),
    kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
    maxChunkBytes: 256,
    ...patch,
  };
}

/** The behavioural tests every `PrefillDriver` must pass, in the order they run. */
export const DRIVER_CONTRACT_CASES: readonly DriverContractCase[] = [
  { name: "reports a semver protocol 1.x and stable capabilities, and is ready", run: runIdentity },
  {
    name: "streams accepted, chunks in canonical order with valid CRCs, then completed with the digest",
    run: runCanonicalStream,
  },
  { name: "is deterministic and prefix-consistent", run: runDeterminism },
  { name: "rejects bad requests with the protocol's codes and reasons", run: runRejections },
  { name: "treats request_id as idempotent while remembered (PF-5..7)", run: runIdempotence },
  { name: "stops and frees the device when the caller aborts mid-stream", run: runAbort },
  { name: "frees the device when the consumer stops iterating early", run: runEarlyStop },
  {
    name: "re-streams a retained cache from a resume position, with the whole-cache digest",
    run: runResume,
  },
  { name: "releases idempotently; a released handle is not found", run: runRelease },
  { name: "never lets another tenant fetch or release a cache", run: runTenantIsolation },
  { name: "streams full telemetry snapshots until the caller stops", run: runTelemetry },
];

/** The driver reports a semver protocol 1.x and stable capabilities, and is ready. */
async function runIdentity(subject: ContractSubject): Promise<void> {
  const info = await subject.driver.getInfo();
  expect(info.protocolVersion).toMatch(/^1\.\d+\.\d+/);
  const first = await subject.driver.getCapabilities();
  expect(await subject.driver.getCapabilities()).toEqual(first);
  expect(first.dtypes.length).toBeGreaterThan(0);
  expect(await subject.driver.probe()).toBe("ready");
  const models = await subject.driver.listModels();
  expect(models.map((m) => m.modelId)).toContain(subject.modelId);
}

/**
 * The driver streams accepted, chunks in canonical order with valid CRCs, then completed with the
 * digest.
 */
async function runCanonicalStream(subject: ContractSubject): Promise<void> {
  const run = await collectPrefill(subject.driver.prefill(toContractRequest(subject)));
  expect(run.events[0]?.type).toBe("accepted");
  expect(run.events.at(-1)?.type).toBe("completed");
  expect(run.descriptor.tokenCount).toBe(40);
  expect(run.layers).toHaveLength(run.descriptor.numLayers);
  const chunks = run.events.filter(
    (e): e is { type: "chunk"; chunk: KvChunk } => e.type === "chunk",
  );
  expect(chunks.every((c) => c.chunk.data.byteLength <= 256)).toBe(true);
  expect(run.stats.promptTokens).toBe(40);
}

/** The driver is deterministic and prefix-consistent. */
async function runDeterminism(subject: ContractSubject): Promise<void> {
  const long = toContractRequest(subject);
  const a = await collectPrefill(subject.driver.prefill(long));
  const b = await collectPrefill(
    subject.driver.prefill({ ...long, requestId: `${long.requestId}-again` }),
  );
  expect(b.stats.kvDigest).toEqual(a.stats.kvDigest);
  const short = await collectPrefill(
    subject.driver.prefill(
      toContractRequest(subject, { promptTokenIds: long.promptTokenIds.subarray(0, 24) }),
    ),
  );
  // NHD rows are token-major: the shorter prompt's bytes are a prefix of the longer one's.
  for (let layer = 0; layer < a.descriptor.numLayers; layer++) {
    const full = a.layers[layer]!.parts.k!;
    const prefix = short.layers[layer]!.parts.k!;
    expect(Buffer.compare(prefix, full.subarray(0, prefix.byteLength))).toBe(0);
  }
}

/** The driver rejects bad requests with the protocol's codes and reasons. */
async function runRejections(subject: ContractSubject): Promise<void> {
  const { driver } = subject;
  await expectOpalError(
    drain(driver.prefill(toContractRequest(subject, { modelId: "no-such-model" }))),
    Code.FAILED_PRECONDITION,
    "MODEL_NOT_LOADED",
  );
  await expectOpalError(
    drain(driver.prefill(toContractRequest(subject, { promptTokenIds: new Uint32Array() }))),
    Code.INVALID_ARGUMENT,
    "PROMPT_EMPTY",
  );
  await expectOpalError(
    drain(
      driver.prefill(toContractRequest(subject, { promptTokenIds: Uint32Array.of(1, 1_000_000) })),
    ),
    Code.INVALID_ARGUMENT,
    "TOKEN_OUT_OF_RANGE",
  );
  const bad = {
    dtype: "bf16",
    scaleScheme: "none",
    layout: "nhd",
    blockSizeTokens: 7,
  } as const;
  await expectOpalError(
    drain(driver.prefill(toContractRequest(subject, { kvFormat: bad }))),
    Code.INVALID_ARGUMENT,
    "UNSUPPORTED_BLOCK_SIZE",
  );
}

/** The driver treats request_id as idempotent while remembered (PF-5..7). */
async function runIdempotence(subject: ContractSubject, ctx: TestContext): Promise<void> {
  const caps = await subject.driver.getCapabilities();
  if (caps.retention.maxRetentionSeconds === 0)
    return ctx.skip("ids need only be remembered while retained");
  const first = toContractRequest(subject, { retentionSeconds: 30 });
  const original = await collectPrefill(subject.driver.prefill(first));
  const replay = await collectPrefill(subject.driver.prefill(first));
  expect(replay.kvHandle).toBe(original.kvHandle);
  expect(replay.stats.kvDigest).toEqual(original.stats.kvDigest);
  expect(replay.stats.firstTokenId).toBe(original.stats.firstTokenId);
  const changed = { ...first, promptTokenIds: first.promptTokenIds.subarray(0, 10) };
  await expectOpalError(
    drain(subject.driver.prefill(changed)),
    Code.ALREADY_EXISTS,
    "REQUEST_ID_CONFLICT",
  );
}

/** The driver stops and frees the device when the caller aborts mid-stream. */
async function runAbort(subject: ContractSubject): Promise<void> {
  const controller = new AbortController();
  const events = subject.driver.prefill(toContractRequest(subject, { maxChunkBytes: 256 }), {
    signal: controller.signal,
  });
  const error = await expectOpalError(
    (async () => {
      for await (const event of events) if (event.type === "chunk") controller.abort();
    })(),
    Code.CANCELLED,
  );
  expect(error.message).toMatch(/cancel/i);
  if (subject.activePrefills) {
    await expect.poll(() => subject.activePrefills!(), { timeout: 5_000 }).toBe(0);
  }
}

/** The driver frees the device when the consumer stops iterating early. */
async function runEarlyStop(subject: ContractSubject): Promise<void> {
  for await (const event of subject.driver.prefill(toContractRequest(subject)))
    if (event.type === "chunk") break;
  if (subject.activePrefills) {
    await expect.poll(() => subject.activePrefills!(), { timeout: 5_000 }).toBe(0);
  }
}

/** The driver re-streams a retained cache from a resume position, with the whole-cache digest. */
async function runResume(subject: ContractSubject, ctx: TestContext): Promise<void> {
  const caps = await subject.driver.getCapabilities();
  if (!caps.features.resume) return ctx.skip("the device does not declare resume");
  const run = await collectPrefill(
    subject.driver.prefill(toContractRequest(subject, { retentionSeconds: 30 })),
  );
  expect(run.kvHandle.length).toBeGreaterThanOrEqual(22);
  const whole = await collectPrefill(
    subject.driver.fetchKv({ kvHandle: run.kvHandle, maxChunkBytes: 300 }),
  );
  expect(whole.stats).toBeUndefined();
  expect(
    Buffer.from(
      digestKvCache(
        fromKvParts(
          whole.descriptor,
          whole.layers.map((l) => l.parts),
        ),
      ),
    ),
  ).toEqual(Buffer.from(run.stats.kvDigest));
  const from = { layer: 1, part: "v" as const, offsetBytes: 48 };
  const resumed: KvChunk[] = [];
  for await (const event of subject.driver.fetchKv({
    kvHandle: run.kvHandle,
    resumeFrom: from,
  })) {
    if (event.type === "chunk") resumed.push(event.chunk);
  }
  expect(resumed[0]).toMatchObject({ layer: 1, part: "v", offsetBytes: 48 });
  const expected = run.layers[1]!.parts.v!.subarray(48, 48 + resumed[0]!.data.byteLength);
  expect(Buffer.compare(resumed[0]!.data, expected)).toBe(0);
  await expectOpalError(
    drain(
      subject.driver.fetchKv({
        kvHandle: run.kvHandle,
        resumeFrom: { layer: 99, offsetBytes: 0 },
      }),
    ),
    Code.OUT_OF_RANGE,
    "RESUME_POSITION_INVALID",
  );
}

/** The driver releases idempotently; a released handle is not found. */
async function runRelease(subject: ContractSubject, ctx: TestContext): Promise<void> {
  const caps = await subject.driver.getCapabilities();
  if (!caps.features.resume) return ctx.skip("the device does not declare resume");
  const run = await collectPrefill(
    subject.driver.prefill(toContractRequest(subject, { retentionSeconds: 30 })),
  );
  expect(await subject.driver.releaseKv(run.kvHandle)).toEqual({ released: true });
  expect(await subject.driver.releaseKv(run.kvHandle)).toEqual({ released: false });
  await expectOpalError(
    drain(subject.driver.fetchKv({ kvHandle: run.kvHandle })),
    Code.NOT_FOUND,
    "KV_HANDLE_NOT_FOUND",
  );
}

/** The driver never lets another tenant fetch or release a cache. */
async function runTenantIsolation(subject: ContractSubject, ctx: TestContext): Promise<void> {
  if (!subject.otherTenant) return ctx.skip("no second tenant configured");
  const caps = await subject.driver.getCapabilities();
  if (!caps.features.resume) return ctx.skip("the device does not declare resume");
  const run = await collectPrefill(
    subject.driver.prefill(toContractRequest(subject, { retentionSeconds: 30 })),
  );
  await expectOpalError(
    drain(subject.otherTenant.fetchKv({ kvHandle: run.kvHandle })),
    Code.NOT_FOUND,
    "KV_HANDLE_NOT_FOUND",
  );
  expect(await subject.otherTenant.releaseKv(run.kvHandle)).toEqual({ released: false });
  expect(await subject.driver.releaseKv(run.kvHandle)).toEqual({ released: true });
}

/** The driver streams full telemetry snapshots until the caller stops. */
async function runTelemetry(subject: ContractSubject): Promise<void> {
  const controller = new AbortController();
  const snapshots = [];
  for await (const snapshot of subject.driver.watchTelemetry(
    { intervalMs: 50 },
    { signal: controller.signal },
  )) {
    snapshots.push(snapshot);
    if (snapshots.length === 2) break;
  }
  expect(snapshots[1]!.timestampUnixMs).toBeGreaterThanOrEqual(snapshots[0]!.timestampUnixMs);
  expect(snapshots[0]).toHaveProperty("energyJoulesTotal");
}
