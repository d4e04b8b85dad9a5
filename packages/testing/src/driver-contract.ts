import { Code, OpalError } from "@opal/core";
import type { FetchEvent, PrefillDriver, PrefillEvent, PrefillRequest } from "@opal/driver";
import {
  createKvAssembler,
  digestKvCache,
  fromKvParts,
  type KvChunk,
  type KvDescriptor,
  type KvLayerParts,
  partsOf,
} from "@opal/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/** What the contract suite runs against. */
export interface ContractSubject {
  /** The driver under test, calling as tenant A. */
  readonly driver: PrefillDriver;
  /** The same device seen by another tenant (B); tenant-isolation tests are skipped without it. */
  readonly otherTenant?: PrefillDriver;
  /** A loaded model with vocabulary >= 64 and context >= 64 tokens. */
  readonly modelId: string;
  /** Prefills currently holding device resources, to check cancellation frees them. */
  activePrefills?(): number;
  /** Stops everything the subject started. */
  close(): Promise<void>;
}

/** A prefill's events, collected and checked against the stream rules. */
export interface CollectedPrefill {
  readonly events: readonly PrefillEvent[];
  readonly descriptor: KvDescriptor;
  readonly kvHandle: string;
  readonly layers: readonly KvLayerParts[];
  readonly stats: Extract<PrefillEvent, { type: "completed" }>["stats"];
}

/**
 * Collects a prefill stream, asserting the protocol's stream rules on the way: `accepted` first,
 * chunks in canonical order with valid CRC32C, `completed` last with the total and digest of the
 * bytes received.
 */
export async function collectPrefill(
  events: AsyncIterable<PrefillEvent | FetchEvent>,
): Promise<CollectedPrefill> {
  const seen: PrefillEvent[] = [];
  let descriptor: KvDescriptor | undefined;
  let kvHandle = "";
  let assembler: ReturnType<typeof createKvAssembler> | undefined;
  const layers: KvLayerParts[] = [];
  let stats: CollectedPrefill["stats"] | undefined;
  let completedDigest: Uint8Array | undefined;
  let completedBytes = 0;
  for await (const event of events) {
    seen.push(event as PrefillEvent);
    if (completedDigest) throw new Error("an event followed `completed`");
    if (event.type === "accepted") {
      if (descriptor) throw new Error("a second `accepted`");
      descriptor = event.descriptor;
      kvHandle = "kvHandle" in event ? event.kvHandle : "";
      assembler = createKvAssembler(descriptor);
    } else if (event.type === "chunk") {
      if (!assembler) throw new Error("a chunk before `accepted`");
      const layer = assembler.accept(event.chunk);
      if (layer) layers.push(layer);
    } else if (event.type === "completed") {
      if (!assembler) throw new Error("`completed` before `accepted`");
      if ("stats" in event) {
        stats = event.stats;
        completedDigest = event.stats.kvDigest;
        completedBytes = event.stats.kvTotalBytes;
      } else {
        completedDigest = event.kvDigest;
        completedBytes = event.kvTotalBytes;
      }
    }
  }
  if (!descriptor || !assembler || !completedDigest)
    throw new Error("the stream ended without `completed`");
  assembler.assertComplete();
  const cache = fromKvParts(
    descriptor,
    layers.map((l) => l.parts),
  );
  expect(Buffer.from(digestKvCache(cache)).toString("hex")).toBe(
    Buffer.from(completedDigest).toString("hex"),
  );
  let total = 0;
  for (const layer of layers)
    for (const part of partsOf(descriptor)) total += layer.parts[part]!.byteLength;
  expect(total).toBe(completedBytes);
  return { events: seen, descriptor, kvHandle, layers, stats: stats! };
}

/** Expects `promise` to reject with an OpalError of `code` and `reason`. */
export async function expectOpalError(
  promise: Promise<unknown>,
  code: Code,
  reason?: string,
): Promise<OpalError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, "expected the call to fail").toBeInstanceOf(OpalError);
  const error = caught as OpalError;
  expect({ code: error.code, reason: reason === undefined ? undefined : error.reason }).toEqual({
    code,
    reason,
  });
  return error;
}

async function drain(events: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of events) {
    // consume
  }
}

let requestCounter = 0;

/**
 * Registers the behavioural tests every `PrefillDriver` must pass — in process or over gRPC —
 * under `describe(name)`. `setup` runs once; its subject is closed after the tests.
 */
export function describeDriverContract(name: string, setup: () => Promise<ContractSubject>): void {
  describe(`driver contract: ${name}`, () => {
    let subject: ContractSubject;
    beforeAll(async () => {
      subject = await setup();
    }, 60_000);
    afterAll(async () => {
      await subject?.close();
    });

    const request = (patch: Partial<PrefillRequest> = {}): PrefillRequest => ({
      requestId: `contract-${process.pid}-${++requestCounter}`,
      modelId: subject.modelId,
      promptTokenIds: Uint32Array.from({ length: 40 }, (_, i) => (i * 7 + 3) % 60),
      kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
      maxChunkBytes: 256,
      ...patch,
    });

    it("reports a semver protocol 1.x and stable capabilities, and is ready", async () => {
      const info = await subject.driver.getInfo();
      expect(info.protocolVersion).toMatch(/^1\.\d+\.\d+/);
      const first = await subject.driver.getCapabilities();
      expect(await subject.driver.getCapabilities()).toEqual(first);
      expect(first.dtypes.length).toBeGreaterThan(0);
      expect(await subject.driver.probe()).toBe("ready");
      const models = await subject.driver.listModels();
      expect(models.map((m) => m.modelId)).toContain(subject.modelId);
    });

    it("streams accepted, chunks in canonical order with valid CRCs, then completed with the digest", async () => {
      const run = await collectPrefill(subject.driver.prefill(request()));
      expect(run.events[0]?.type).toBe("accepted");
      expect(run.events.at(-1)?.type).toBe("completed");
      expect(run.descriptor.tokenCount).toBe(40);
      expect(run.layers).toHaveLength(run.descriptor.numLayers);
      const chunks = run.events.filter(
        (e): e is { type: "chunk"; chunk: KvChunk } => e.type === "chunk",
      );
      expect(chunks.every((c) => c.chunk.data.byteLength <= 256)).toBe(true);
      expect(run.stats.promptTokens).toBe(40);
    });

    it("is deterministic and prefix-consistent", async () => {
      const long = request();
      const a = await collectPrefill(subject.driver.prefill(long));
      const b = await collectPrefill(
        subject.driver.prefill({ ...long, requestId: `${long.requestId}-again` }),
      );
      expect(b.stats.kvDigest).toEqual(a.stats.kvDigest);
      const short = await collectPrefill(
        subject.driver.prefill(request({ promptTokenIds: long.promptTokenIds.subarray(0, 24) })),
      );
      // NHD rows are token-major: the shorter prompt's bytes are a prefix of the longer one's.
      for (let layer = 0; layer < a.descriptor.numLayers; layer++) {
        const full = a.layers[layer]!.parts.k!;
        const prefix = short.layers[layer]!.parts.k!;
        expect(Buffer.compare(prefix, full.subarray(0, prefix.byteLength))).toBe(0);
      }
    });

    it("rejects bad requests with the protocol's codes and reasons", async () => {
      const { driver } = subject;
      await expectOpalError(
        drain(driver.prefill(request({ modelId: "no-such-model" }))),
        Code.FAILED_PRECONDITION,
        "MODEL_NOT_LOADED",
      );
      await expectOpalError(
        drain(driver.prefill(request({ promptTokenIds: new Uint32Array() }))),
        Code.INVALID_ARGUMENT,
        "PROMPT_EMPTY",
      );
      await expectOpalError(
        drain(driver.prefill(request({ promptTokenIds: Uint32Array.of(1, 1_000_000) }))),
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
        drain(driver.prefill(request({ kvFormat: bad }))),
        Code.INVALID_ARGUMENT,
        "UNSUPPORTED_BLOCK_SIZE",
      );
    });

    it("treats request_id as idempotent while remembered (PF-5..7)", async (ctx) => {
      const caps = await subject.driver.getCapabilities();
      if (caps.retention.maxRetentionSeconds === 0)
        return ctx.skip("ids need only be remembered while retained");
      const first = request({ retentionSeconds: 30 });
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
    });

    it("stops and frees the device when the caller aborts mid-stream", async () => {
      const controller = new AbortController();
      const events = subject.driver.prefill(request({ maxChunkBytes: 256 }), {
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
    });

    it("frees the device when the consumer stops iterating early", async () => {
      for await (const event of subject.driver.prefill(request()))
        if (event.type === "chunk") break;
      if (subject.activePrefills) {
        await expect.poll(() => subject.activePrefills!(), { timeout: 5_000 }).toBe(0);
      }
    });

    it("re-streams a retained cache from a resume position, with the whole-cache digest", async (ctx) => {
      const caps = await subject.driver.getCapabilities();
      if (!caps.features.resume) return ctx.skip("the device does not declare resume");
      const run = await collectPrefill(subject.driver.prefill(request({ retentionSeconds: 30 })));
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
    });

    it("releases idempotently; a released handle is not found", async (ctx) => {
      const caps = await subject.driver.getCapabilities();
      if (!caps.features.resume) return ctx.skip("the device does not declare resume");
      const run = await collectPrefill(subject.driver.prefill(request({ retentionSeconds: 30 })));
      expect(await subject.driver.releaseKv(run.kvHandle)).toEqual({ released: true });
      expect(await subject.driver.releaseKv(run.kvHandle)).toEqual({ released: false });
      await expectOpalError(
        drain(subject.driver.fetchKv({ kvHandle: run.kvHandle })),
        Code.NOT_FOUND,
        "KV_HANDLE_NOT_FOUND",
      );
    });

    it("never lets another tenant fetch or release a cache", async (ctx) => {
      if (!subject.otherTenant) return ctx.skip("no second tenant configured");
      const caps = await subject.driver.getCapabilities();
      if (!caps.features.resume) return ctx.skip("the device does not declare resume");
      const run = await collectPrefill(subject.driver.prefill(request({ retentionSeconds: 30 })));
      await expectOpalError(
        drain(subject.otherTenant.fetchKv({ kvHandle: run.kvHandle })),
        Code.NOT_FOUND,
        "KV_HANDLE_NOT_FOUND",
      );
      expect(await subject.otherTenant.releaseKv(run.kvHandle)).toEqual({ released: false });
      expect(await subject.driver.releaseKv(run.kvHandle)).toEqual({ released: true });
    });

    it("streams full telemetry snapshots until the caller stops", async () => {
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
    });
  });
}
