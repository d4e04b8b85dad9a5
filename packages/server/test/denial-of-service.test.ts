import { createServer as createHttp2Server, type Http2Server } from "node:http2";
import {
  type AddressInfo,
  createServer as createNetServer,
  type Server as NetServer,
} from "node:net";
import {
  createDeviceClient,
  createKvReceiver,
  createMemorySink,
  type DeviceClient,
} from "@opal/client";
import { Code, type OpalError } from "@opal/core";
import { MIN_CHUNK_BYTES } from "@opal/driver";
import { digestKvCache } from "@opal/kv";
import { createMockDevice } from "@opal/mock";
import { createPresetWeights, encodeHfCheckpoint } from "@opal/reference";
import {
  collectPrefill,
  expectOpalError,
  openPush,
  type PushOutcomeOnWire,
  toPushMessages,
} from "@opal/testing";
import { describe, expect, it } from "vitest";
import { createDeviceServer } from "../src/index";
import { openUnreadPrefill } from "./attackers";
import { tinyRequest } from "./fixtures";

const TOKENS = { "t-a": "tenant-a", "t-b": "tenant-b" };

/** A 32 MiB cache: far more than grpc-js and HTTP/2 buffer for a caller that does not read. */
const bigRequest = () =>
  tinyRequest({
    modelId: "llama-3-8b",
    promptTokenIds: Uint32Array.from({ length: 256 }, (_, i) => i % 1000),
    kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
    maxChunkBytes: 64 * 1024,
  });

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("readers that stop reading (issue #18 item 1)", () => {
  it("ends a stream its caller stopped reading after streamStallTimeoutMs with DEADLINE_EXCEEDED, freeing its device slot", async () => {
    const device = createMockDevice({
      models: ["opal-tiny", "llama-3-8b"],
      limits: { maxConcurrentPrefills: 2, maxQueuedPrefills: 0 },
    });
    const server = await createDeviceServer(device, {
      auth: { tokens: TOKENS },
      limits: { streamStallTimeoutMs: 1_000 },
    });
    const b = createDeviceClient(server.address, { token: "t-b" });
    const stalled = [0, 1].map(() => openUnreadPrefill(server.address, "t-a", bigRequest()));
    try {
      await until(() => device.stats.activePrefills === 2);
      // Both device slots are held by streams nobody reads, which do not end by themselves.
      await new Promise((resolve) => setTimeout(resolve, 150));
      expect(device.stats.activePrefills).toBe(2);
      // Before the fix they held the slots for as long as their connections stayed open.
      await until(() => device.stats.activePrefills === 0, 3_000);
      const served = await collectPrefill(b.prefill(tinyRequest()));
      expect(served.stats.promptTokens).toBe(32);
      for (const stream of stalled) {
        const { bytes, code, details } = await stream.readAll();
        expect(bytes).toBeGreaterThan(0);
        expect({ code, stalled: details.startsWith("stalled") }).toEqual({
          code: Code.DEADLINE_EXCEEDED,
          stalled: true,
        });
      }
    } finally {
      for (const stream of stalled) stream.close();
      await b.close();
      await server.shutdown({ graceMs: 0 });
    }
  });

  it("refuses chunks below MIN_CHUNK_BYTES over the wire, for Prefill and FetchKv", async () => {
    const server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }));
    const client = createDeviceClient(server.address);
    try {
      // Before the fix a 2-byte chunk size was accepted: 32 KiB of KV became 16,384 messages.
      const error = await expectOpalError(
        collectPrefill(client.prefill(tinyRequest({ maxChunkBytes: 2 }))),
        Code.INVALID_ARGUMENT,
        "INVALID_FIELD",
      );
      expect(error.fieldViolations[0]?.field).toBe("max_chunk_bytes");
      const kept = await collectPrefill(client.prefill(tinyRequest({ retentionSeconds: 30 })));
      await expectOpalError(
        collectPrefill(client.fetchKv({ kvHandle: kept.kvHandle, maxChunkBytes: 2 })),
        Code.INVALID_ARGUMENT,
        "INVALID_FIELD",
      );
      const smallest = await collectPrefill(
        client.prefill(tinyRequest({ maxChunkBytes: MIN_CHUNK_BYTES })),
      );
      const sizes = smallest.events.flatMap((e) =>
        e.type === "chunk" ? [e.chunk.data.byteLength] : [],
      );
      expect(Math.max(...sizes)).toBe(MIN_CHUNK_BYTES);
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });
});

describe("retention quota per tenant (issue #18 item 2, RT-20)", () => {
  it("keeps one tenant's abandoned retained caches to its quota, so another tenant can still retain", async () => {
    const MIB = 1024 * 1024;
    const device = createMockDevice({
      models: ["opal-tiny", "llama-3-8b"],
      // Room for two 32 MiB caches; one tenant may hold one.
      limits: { maxRetainedBytes: 64 * MIB, maxRetainedBytesPerTenant: 32 * MIB },
    });
    const server = await createDeviceServer(device, { auth: { tokens: TOKENS } });
    const a = createDeviceClient(server.address, { token: "t-a" });
    const b = createDeviceClient(server.address, { token: "t-b" });
    try {
      // Tenant A starts retained prefills and walks away once each is accepted.
      const abandon = async (requestId: string) => {
        const events = a.prefill({ ...bigRequest(), requestId, retentionSeconds: 600 });
        for await (const event of events) if (event.type === "accepted") break;
      };
      await abandon("abandoned-1");
      const refused = await expectOpalError(
        abandon("abandoned-2"),
        Code.RESOURCE_EXHAUSTED,
        "RETENTION_LIMIT_EXCEEDED",
      );
      expect(refused.message).toContain("the tenant's quota");
      expect(refused.retryDelayMs).toBeGreaterThan(590_000);
      // Before the fix tenant A's second cache took the rest of the budget and this failed.
      const kept = await collectPrefill(b.prefill({ ...bigRequest(), retentionSeconds: 600 }));
      expect(kept.stats.kvTotalBytes).toBe(32 * MIB);
      expect(device.stats.retainedKvBytes).toBe(64 * MIB);
    } finally {
      await a.close();
      await b.close();
      await server.shutdown({ graceMs: 0 });
    }
  });
});

describe("push targets (issue #18 item 5, PS-1, PS-17)", () => {
  /** The status of a pushed prefill of `target`, as the caller sees it. */
  const pushTo = async (client: DeviceClient, target: string, request = tinyRequest()) => {
    try {
      await collectPrefill(
        client.prefill({ ...request, pushTarget: { address: target, transferId: "t-1" } }),
      );
      return undefined;
    } catch (error) {
      const e = error as OpalError;
      return { code: e.code, reason: e.reason, message: e.message };
    }
  };

  it("without an allow-list refuses every target but the caller's own address, all with one error", async () => {
    const server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }));
    const client = createDeviceClient(server.address);
    try {
      const refused = [
        "10.1.2.3:50051",
        "169.254.169.254:80",
        "[fd00::1]:50051",
        "metadata.google.internal:80",
        "unix:/var/run/docker.sock",
        "dns:127.0.0.1:80",
      ];
      const outcomes = await Promise.all(refused.map((target) => pushTo(client, target)));
      // Before the fix the device connected to each of them.
      for (const outcome of outcomes) {
        expect(outcome).toEqual({
          code: Code.PERMISSION_DENIED,
          reason: "PERMISSION_DENIED",
          message: expect.stringContaining("the caller's own address"),
        });
        expect(outcome!.message).toBe(outcomes[0]!.message);
      }
      // The caller's own (loopback) address is allowed: the device tries it.
      expect((await pushTo(client, "127.0.0.1:1"))?.reason).toBe("PUSH_TARGET_UNREACHABLE");
      expect((await pushTo(client, "localhost:1"))?.reason).toBe("PUSH_TARGET_UNREACHABLE");
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });

  it("fails a push whose receiver stops reading after streamStallTimeoutMs, freeing the device slot", async () => {
    // A receiver that answers the PushKv call and then reads nothing: its window fills.
    const sink = createHttp2Server();
    sink.on("stream", (stream) => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" });
      stream.pause();
    });
    await listen(sink);
    const device = createMockDevice({ models: ["llama-3-8b"] });
    const server = await createDeviceServer(device, { limits: { streamStallTimeoutMs: 500 } });
    const client = createDeviceClient(server.address);
    try {
      const outcome = await pushTo(client, `127.0.0.1:${portOf(sink)}`, bigRequest());
      // Before the fix the push waited for the receiver forever, holding the device's slot.
      expect(outcome).toEqual({
        code: Code.UNAVAILABLE,
        reason: "PUSH_TARGET_UNREACHABLE",
        message: "[unavailable] push target stalled: it read nothing for 500 ms",
      });
      await until(() => device.stats.activePrefills === 0);
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
      sink.close();
    }
  });

  it("fails a closed port, a port that is not HTTP/2 and an HTTP/2 server that is not a receiver alike", async () => {
    const closed = await freePort();
    const notHttp2 = createNetServer((socket) => socket.end("HTTP/1.1 400 Bad Request\r\n\r\n"));
    const notReceiver = createHttp2Server((_req, res) => {
      res.statusCode = 404;
      res.end();
    });
    await Promise.all([listen(notHttp2), listen(notReceiver)]);
    const server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }));
    const client = createDeviceClient(server.address);
    try {
      const outcomes = await Promise.all(
        [closed, portOf(notHttp2), portOf(notReceiver)].map((port) =>
          pushTo(client, `127.0.0.1:${port}`),
        ),
      );
      // Before the fix the three messages differed, telling a caller what listens where.
      expect(outcomes).toEqual(
        Array(3).fill({
          code: Code.UNAVAILABLE,
          reason: "PUSH_TARGET_UNREACHABLE",
          message: "[unavailable] push target unreachable, or not an OPAL KvReceiver",
        }),
      );
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
      notHttp2.close();
      notReceiver.close();
    }
  });
});

describe("LoadModel bounds (issue #18 item 3, MD-15, MD-20)", () => {
  const { configJson, safetensors } = encodeHfCheckpoint(createPresetWeights("opal-tiny"), {
    dtype: "bf16",
  });
  /** An upload that sends its first kilobyte and then nothing, until `stop` is called. */
  const stalledUpload = (client: DeviceClient, modelId: string, weightsByteLength: number) => {
    let stop = () => {};
    const stopped = new Promise<void>((resolve) => {
      stop = resolve;
    });
    const outcome = client
      .loadModel({
        modelId,
        configJson,
        weightsByteLength,
        weights: (async function* () {
          yield safetensors.subarray(0, 1024);
          await stopped;
        })(),
      })
      .then(
        () => undefined,
        (error: OpalError) => error,
      );
    return { outcome, stop };
  };
  const upload = (client: DeviceClient, modelId: string) =>
    client.loadModel({
      modelId,
      configJson,
      weightsByteLength: safetensors.byteLength,
      weights: (async function* () {
        yield safetensors;
      })(),
    });

  it("refuses a new model id beyond the device's model limit, keeping ListModels bounded", async () => {
    const device = createMockDevice({ models: ["opal-tiny"], limits: { maxLoadedModels: 3 } });
    const server = await createDeviceServer(device);
    const client = createDeviceClient(server.address);
    const load = (modelId: string) =>
      client.loadModel({ modelId, configJson: "{}", deviceLocalRef: "opal-tiny" });
    try {
      await load("copy-1");
      await load("copy-2");
      // Before the fix every load succeeded: 19,000 of them outgrew ListModels' message limit.
      const error = await expectOpalError(load("copy-3"), Code.RESOURCE_EXHAUSTED, "DEVICE_BUSY");
      expect(error.resource?.resourceType).toBe("opal.device/model-memory");
      expect(error.retryDelayMs).toBeUndefined();
      expect((await load("copy-1")).alreadyLoaded).toBe(true);
      expect(await client.listModels()).toHaveLength(3);
      await client.unloadModel("copy-2");
      expect((await load("copy-3")).alreadyLoaded).toBe(false);
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });

  it("bounds concurrent uploads and ends idle ones with DEADLINE_EXCEEDED, freeing their slots", async () => {
    const server = await createDeviceServer(createMockDevice({ models: [] }), {
      limits: { maxConcurrentUploads: 2, uploadIdleTimeoutMs: 1_500 },
    });
    const client = createDeviceClient(server.address);
    const stalled = [1, 2].map((i) =>
      stalledUpload(client, `stalled-${i}`, safetensors.byteLength),
    );
    try {
      await new Promise((resolve) => setTimeout(resolve, 400));
      // Before the fix a third (and a thousandth) upload was taken and buffered beside them.
      const busy = await expectOpalError(
        upload(client, "third"),
        Code.RESOURCE_EXHAUSTED,
        "DEVICE_BUSY",
      );
      expect(busy.retryDelayMs).toBeGreaterThan(0);
      for (const { outcome } of stalled) {
        const error = await outcome;
        expect({ code: error?.code, idle: error?.message.includes("upload idle") }).toEqual({
          code: Code.DEADLINE_EXCEEDED,
          idle: true,
        });
      }
      expect((await upload(client, "third")).alreadyLoaded).toBe(false);
      expect((await client.listModels()).map((m) => m.modelId)).toEqual(["third"]);
    } finally {
      for (const { stop } of stalled) stop();
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });

  it("refuses an upload whose declared bytes do not fit beside those in flight", async () => {
    const server = await createDeviceServer(createMockDevice({ models: [] }), {
      limits: { maxUploadBytesInFlight: safetensors.byteLength + 1_000 },
    });
    const client = createDeviceClient(server.address);
    const held = stalledUpload(client, "held", safetensors.byteLength);
    try {
      await new Promise((resolve) => setTimeout(resolve, 400));
      const busy = await expectOpalError(
        upload(client, "next"),
        Code.RESOURCE_EXHAUSTED,
        "DEVICE_BUSY",
      );
      expect(busy.message).toContain("does not fit beside");
      expect(busy.retryDelayMs).toBeGreaterThan(0);
      const huge = stalledUpload(client, "huge", 2 * safetensors.byteLength);
      const tooBig = await huge.outcome;
      expect({ code: tooBig?.code, retry: tooBig?.retryDelayMs }).toEqual({
        code: Code.RESOURCE_EXHAUSTED,
        retry: undefined,
      });
      huge.stop();
    } finally {
      held.stop();
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });
});

describe("one tenant cannot stop a device (issue #18, done when)", () => {
  it("keeps a second tenant's prefills succeeding under slow-reader, retention, upload and trickle-push attacks at once", async () => {
    const MIB = 1024 * 1024;
    const { configJson, safetensors } = encodeHfCheckpoint(createPresetWeights("opal-tiny"), {
      dtype: "bf16",
    });
    const device = createMockDevice({
      models: ["opal-tiny", "llama-3-8b"],
      limits: {
        maxConcurrentPrefills: 4,
        maxQueuedPrefills: 4,
        maxRetainedBytes: 64 * MIB,
        maxRetainedBytesPerTenant: 32 * MIB,
      },
    });
    const server = await createDeviceServer(device, {
      auth: { tokens: TOKENS },
      limits: {
        maxConcurrentPrefillsPerTenant: 2,
        streamStallTimeoutMs: 1_000,
        maxConcurrentUploads: 2,
        uploadIdleTimeoutMs: 1_500,
      },
    });
    // The decode side: tenant B's pushes arrive here (the host pushes for the mock, which does not
    // push itself); the attacker also holds a receiver token. 16 transfer slots, 8 per sender.
    const receiver = await createKvReceiver({
      tokens: ["attacker", "device"],
      idleTimeoutMs: 2_000,
      createSink: () => createMemorySink(),
    });
    const a = createDeviceClient(server.address, { token: "t-a" });
    const b = createDeviceClient(server.address, { token: "t-b" });
    let stopUploads = () => {};
    const uploadsStopped = new Promise<void>((resolve) => {
      stopUploads = resolve;
    });
    const abandon = async (requestId: string) => {
      const events = a.prefill({ ...bigRequest(), requestId, retentionSeconds: 600 });
      for await (const event of events) if (event.type === "accepted") break;
    };
    // A real cache for the trickling pushers to send a little of.
    const bait = await collectPrefill(a.prefill(tinyRequest()));
    // Tenant A: retained caches it abandons (one fits its quota, the next is refused)...
    await abandon("abandon-1");
    const refusedRetention = await abandon("abandon-2").catch((error: OpalError) => error);
    // ...20 streams it never reads...
    const unread = Array.from({ length: 20 }, () =>
      openUnreadPrefill(server.address, "t-a", bigRequest()),
    );
    // ...16 raw pushes to the receiver with its token, each sending a header and then, forever,
    // empty messages every 250 ms (even ones) or one real chunk every 500 ms (odd ones)...
    const tricklers = Array.from({ length: 16 }, (_, i) => {
      const { header, chunks } = toPushMessages(bait, `trickle-${i}`, `trickle-${i}`);
      const { call, result } = openPush(receiver.address, "attacker");
      call.write(header);
      let next = 0;
      const timer =
        i % 2 === 0
          ? setInterval(() => call.write({}), 250)
          : setInterval(() => call.write(chunks[next++]!), 500);
      const trickler: { sendsChunks: boolean; outcome?: PushOutcomeOnWire; stop(): void } = {
        sendsChunks: i % 2 === 1,
        stop() {
          clearInterval(timer);
          call.cancel();
        },
      };
      void result.then((outcome) => {
        trickler.outcome = outcome;
      });
      return trickler;
    });
    try {
      // ...and uploads that stall after their first kilobyte.
      const uploads = Array.from({ length: 3 }, (_, i) =>
        a
          .loadModel({
            modelId: `stalled-${i}`,
            configJson,
            weightsByteLength: safetensors.byteLength,
            weights: (async function* () {
              yield safetensors.subarray(0, 1024);
              await uploadsStopped;
            })(),
          })
          .catch((error: OpalError) => error),
      );
      // The receiver refuses the pushes beyond the 8 one sender may hold, and keeps 8 open. Before
      // the fix (no per-sender cap, empty messages counted as progress) the 16 held every slot and
      // tenant B's pushes failed PUSH_REJECTED.
      const busy = () => tricklers.filter((t) => t.outcome?.error?.reason === "DEVICE_BUSY");
      await until(() => busy().length === 8);
      const held = tricklers.filter((t) => !busy().includes(t));
      // Tenant B keeps working meanwhile: every prefill is pushed to the receiver and committed
      // there (same bytes), retained on the device and released.
      const served: number[] = [];
      const startedAt = performance.now();
      while (performance.now() - startedAt < 3_000) {
        const t = performance.now();
        const transferId = `b-${served.length}`;
        let kvHandle = "";
        let committed = false;
        const request = tinyRequest({
          retentionSeconds: 60,
          pushTarget: { address: receiver.address, transferId, authorizationToken: "device" },
        });
        for await (const event of b.prefill(request)) {
          if (event.type === "accepted") kvHandle = event.kvHandle;
          if (event.type === "chunk") throw new Error("a pushed prefill sent its cache inline");
          if (event.type === "completed") {
            committed = event.stats.pushReceipt?.committed === true;
            const received = await receiver.received(transferId, { timeoutMs: 1_000 });
            expect(Buffer.from(digestKvCache(received.receipt))).toEqual(
              Buffer.from(event.stats.kvDigest),
            );
          }
        }
        expect(committed).toBe(true);
        expect((await b.releaseKv(kvHandle)).released).toBe(true);
        served.push(performance.now() - t);
      }
      expect(served.length).toBeGreaterThanOrEqual(5);
      console.log(
        `tenant B under attack: ${served.length} pushed prefills committed, slowest ${Math.round(Math.max(...served))} ms`,
      );
      // The attacks were refused or ended, each with its documented status.
      const outcomes = await Promise.all(unread.map((stream) => stream.readAll()));
      const codes = outcomes.map((o) => o.code);
      expect(codes.filter((c) => c === Code.RESOURCE_EXHAUSTED).length).toBeGreaterThanOrEqual(16);
      expect(
        codes.every((c) => c === Code.RESOURCE_EXHAUSTED || c === Code.DEADLINE_EXCEEDED),
      ).toBe(true);
      expect(refusedRetention?.reason).toBe("RETENTION_LIMIT_EXCEEDED");
      expect(device.stats.retainedKvBytes).toBe(32 * MIB);
      const uploadErrors = (await Promise.all(uploads)).map((e) => (e as OpalError).code);
      expect(uploadErrors.sort()).toEqual(
        [Code.DEADLINE_EXCEEDED, Code.DEADLINE_EXCEEDED, Code.RESOURCE_EXHAUSTED].sort(),
      );
      // Of the 8 trickling pushes taken, those sending chunks are still open (slow progress holds
      // a slot); those sending only empty messages ended as idle (PS-9: idle means no KV bytes).
      expect(busy()).toHaveLength(8);
      const heldOutcomes = held.map((t) => ({
        sendsChunks: t.sendsChunks,
        code: t.outcome?.error?.code,
        idle: /sent no KV bytes/.test(t.outcome?.error?.message ?? ""),
      }));
      expect(heldOutcomes).toEqual(
        held.map((t) =>
          t.sendsChunks
            ? { sendsChunks: true, code: undefined, idle: false }
            : { sendsChunks: false, code: Code.DEADLINE_EXCEEDED, idle: true },
        ),
      );
    } finally {
      stopUploads();
      for (const stream of unread) stream.close();
      for (const t of tricklers) t.stop();
      await a.close();
      await b.close();
      await receiver.close();
      await server.shutdown({ graceMs: 0 });
    }
  }, 30_000);
});

function listen(server: NetServer | Http2Server): Promise<void> {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
}

function portOf(server: NetServer | Http2Server): number {
  return (server.address() as AddressInfo).port;
}

async function freePort(): Promise<number> {
  const server = createNetServer();
  await listen(server);
  const port = portOf(server);
  await new Promise((resolve) => server.close(resolve));
  return port;
}
