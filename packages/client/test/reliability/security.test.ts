// Security promises not already covered by packages/server/test/security.test.ts and limits.test.ts
// (TLS, mTLS, tokens, rate and quota limits, fetch/release scoping): see docs/security.md.
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client, credentials, Metadata } from "@grpc/grpc-js";
import { Code, type OpalError } from "@opal/core";
import { decodeSafetensors, encodeSafetensors, type KvCache } from "@opal/kv";
import { createMockDevice, type MockServer, serveMockDevice } from "@opal/mock";
import { fromGrpcStatus, KvReceiverServiceDefinition as R, toWireDescriptor } from "@opal/protocol";
import { createPresetWeights, encodeHfCheckpoint } from "@opal/reference";
import { collectPrefill, expectOpalError } from "@opal/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createDeviceClient,
  type DeviceClient,
} from "../../src/device-client/create-device-client";
import { createKvReceiver } from "../../src/kv-receiver/create-kv-receiver";
import type { KvReceiver } from "../../src/kv-receiver/kv-receiver-options";
import { pushPrefill } from "../../src/prefill/push-prefill";
import { startPrefill } from "../../src/prefill/start-prefill";
import { createMemorySink } from "../../src/sinks/memory-sink";
import { createMemoryLogger, settle, tinyRequest } from "./fixtures";

const TOKENS = { "token-of-a-7f3e9c": "tenant-a", "token-of-b-51d2aa": "tenant-b" };
const A = "token-of-a-7f3e9c";
const B = "token-of-b-51d2aa";

describe("prefix cache: no hits across tenants (SEC-7, PH-3)", () => {
  let mock: MockServer;
  let a: DeviceClient;
  let b: DeviceClient;
  beforeAll(async () => {
    mock = await serveMockDevice({ models: ["opal-tiny"] }, { auth: { tokens: TOKENS } });
    a = createDeviceClient(mock.address, { token: A });
    b = createDeviceClient(mock.address, { token: B });
  });
  afterAll(async () => {
    await a.close();
    await b.close();
    await mock.close({ graceMs: 0 });
  });

  it("gives a tenant hits on its own repeat but none on another tenant's prompt, even with the same cache_salt", async () => {
    const same = { cacheSalt: "shared-salt" };
    const hits = async (client: DeviceClient, seed: number, patch = same) =>
      (await startPrefill(client, tinyRequest(patch, { length: 64, seed })).result).stats
        .prefixCacheHitTokens;

    expect(await hits(a, 1)).toBe(0);
    // A's repeat is served from its prefix cache (up to the last token, which is recomputed).
    expect(await hits(a, 1)).toBe(63);
    // B sends the very same prompt and salt: the device salts with the tenant, so B misses...
    expect(await hits(b, 1)).toBe(0);
    // ...and B's own repeat hits its own entry, so the first miss was isolation, not a cold cache.
    expect(await hits(b, 1)).toBe(63);
    // Within a tenant, another cache_salt is another cache too.
    expect(await hits(a, 1, { cacheSalt: "other-salt" })).toBe(0);
  });
});

describe("push handoff isolation (PS-10, SEC-7)", () => {
  let mock: MockServer;
  let a: DeviceClient;
  let b: DeviceClient;
  let receiver: KvReceiver<KvCache>;
  const sinksCreated: string[] = [];
  beforeAll(async () => {
    mock = await serveMockDevice({ models: ["opal-tiny"] }, { auth: { tokens: TOKENS } });
    a = createDeviceClient(mock.address, { token: A });
    b = createDeviceClient(mock.address, { token: B });
    receiver = await createKvReceiver({
      tokens: ["receiver-of-a-secret"],
      createSink: ({ transferId }) => {
        sinksCreated.push(transferId);
        return createMemorySink();
      },
    });
  });
  afterAll(async () => {
    await a.close();
    await b.close();
    await receiver.close();
    await mock.close({ graceMs: 0 });
  });

  /** A raw PushKv call with `token` (or none) sending one valid header, as a hostile sender would. */
  async function rawPush(token: string | undefined, transferId: string): Promise<OpalError> {
    const descriptor = (await collectPrefill(a.prefill(tinyRequest()))).descriptor;
    const client = new Client(receiver.address, credentials.createInsecure());
    const metadata = new Metadata();
    if (token !== undefined) metadata.set("authorization", `Bearer ${token}`);
    try {
      return await new Promise<OpalError>((resolve, reject) => {
        const call = client.makeClientStreamRequest(
          R.pushKv.path,
          R.pushKv.requestSerialize,
          R.pushKv.responseDeserialize,
          metadata,
          { deadline: Date.now() + 5_000 },
          (error) =>
            error ? resolve(fromGrpcStatus(error)) : reject(new Error("the push was accepted")),
        );
        call.write({ header: { transferId, descriptor: toWireDescriptor(descriptor) } });
        call.end();
      });
    } finally {
      client.close();
    }
  }

  it("refuses a sender without the receiver's token, or with another's, before creating any sink", async () => {
    for (const token of [undefined, B, "receiver-of-a-secre", "receiver-of-a-secretX"]) {
      const error = await rawPush(token, `raw-${token}`);
      expect({ code: error.code, reason: error.reason }).toEqual({
        code: Code.UNAUTHENTICATED,
        reason: "TOKEN_INVALID",
      });
      expect(error.message).not.toContain("receiver-of-a-secret");
    }
    expect(sinksCreated).toEqual([]);
  });

  it("does not let a tenant replay another tenant's pushed cache by naming its request_id or handle", async () => {
    const target = (transferId: string, authorizationToken = "receiver-of-a-secret") => ({
      address: receiver.address,
      transferId,
      authorizationToken,
    });
    const request = tinyRequest({ retentionSeconds: 60, pushTarget: target("a-1") });
    const pushedByA = await pushPrefill(a, request);
    expect(pushedByA.receipt.committed).toBe(true);
    // A's own replay of the same request (same body, push target included: PF-7) names the handle.
    let handle = "";
    for await (const event of a.prefill(request))
      if (event.type === "accepted") handle = event.kvHandle;
    expect(handle).not.toBe("");

    // B reuses A's request_id and body: request ids are per tenant (PF-4), so B gets a new
    // computation, not A's retained cache, and its own push goes nowhere without a token.
    const started = mock.device.stats.prefillsStarted;
    await expectOpalError(
      pushPrefill(
        b,
        { ...request, pushTarget: target("b-1", "wrong") },
        { retry: { maxAttempts: 1 } },
      ),
      Code.ABORTED,
      "PUSH_REJECTED",
    );
    expect(mock.device.stats.prefillsStarted).toBe(started + 1);
    // B cannot reach the pushed-and-retained cache by its handle either (PS-16 + RT-9).
    await expectOpalError(
      collectPrefill(b.fetchKv({ kvHandle: handle })),
      Code.NOT_FOUND,
      "KV_HANDLE_NOT_FOUND",
    );
    expect(await b.releaseKv(handle)).toEqual({ released: false });
    expect(await a.releaseKv(handle)).toEqual({ released: true });
  });

  it("PS-9 a receiver aborts a transfer that makes no progress for its idle timeout", async () => {
    const aborted: string[] = [];
    const idle = await createKvReceiver({
      idleTimeoutMs: 200,
      createSink: ({ transferId }) => {
        const sink = createMemorySink();
        return {
          ...sink,
          abort(reason) {
            aborted.push(transferId);
            return sink.abort(reason);
          },
        };
      },
    });
    const descriptor = (await collectPrefill(a.prefill(tinyRequest()))).descriptor;
    const client = new Client(idle.address, credentials.createInsecure());
    try {
      const started = performance.now();
      const error = await new Promise<OpalError>((resolve, reject) => {
        const call = client.makeClientStreamRequest(
          R.pushKv.path,
          R.pushKv.requestSerialize,
          R.pushKv.responseDeserialize,
          new Metadata(),
          { deadline: Date.now() + 10_000 },
          (e) => (e ? resolve(fromGrpcStatus(e)) : reject(new Error("the push was accepted"))),
        );
        // A header, then silence: the stream stays open but makes no progress.
        call.write({ header: { transferId: "stalled", descriptor: toWireDescriptor(descriptor) } });
      });
      expect({ code: error.code, reason: error.reason }).toEqual({
        code: Code.DEADLINE_EXCEEDED,
        reason: "DEADLINE_EXCEEDED",
      });
      expect(performance.now() - started).toBeLessThan(5_000);
      expect(aborted).toEqual(["stalled"]);
      // Node clamps timer delays it cannot hold to 1 ms: such values are refused, not obeyed.
      for (const idleTimeoutMs of [Number.POSITIVE_INFINITY, 2 ** 31, -1, 0.5]) {
        await expectOpalError(
          createKvReceiver({ idleTimeoutMs, createSink: () => createMemorySink() }),
          Code.INVALID_ARGUMENT,
          "INVALID_FIELD",
        );
      }
    } finally {
      client.close();
      await idle.close();
    }
  });
});

describe("KV handles: unguessable and expiring (RT-8, RT-11)", () => {
  it("hands out 1,000 distinct handles of at least 128 random bits", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    const handles: string[] = [];
    for (let i = 0; i < 1000; i++) {
      for await (const event of device.prefill(
        tinyRequest({ retentionSeconds: 60 }, { length: 1 }),
      )) {
        if (event.type === "accepted") {
          handles.push(event.kvHandle);
          break;
        }
      }
    }
    await device.close();
    expect(new Set(handles).size).toBe(1000);
    for (const handle of handles) {
      // base64url without padding: 22 characters carry 132 bits, of which 128 are random bytes.
      expect(handle).toMatch(/^[A-Za-z0-9_-]{22,128}$/);
      expect(Buffer.from(handle, "base64url").byteLength).toBeGreaterThanOrEqual(16);
    }
    // No shared structure (a counter, a timestamp): not even two handles share their first 8 characters.
    expect(new Set(handles.map((h) => h.slice(0, 8))).size).toBe(1000);
    // Every character of the alphabet turns up: the bits are spread, not drawn from a small set.
    expect(new Set(handles.join("")).size).toBe(64);
  });

  it("expires a lease on the device's clock: NOT_FOUND KV_HANDLE_EXPIRED, nothing released, no bytes kept", async () => {
    let clock = Date.UTC(2030, 0, 1);
    const mock = await serveMockDevice(
      { models: ["opal-tiny"], now: () => clock, limits: { maxRetentionSeconds: 5 } },
      { auth: { tokens: TOKENS } },
    );
    const a = createDeviceClient(mock.address, { token: A });
    try {
      const held = await collectPrefill(a.prefill(tinyRequest({ retentionSeconds: 5 })));
      expect(mock.device.stats.retainedKvBytes).toBeGreaterThan(0);
      clock += 4_999;
      expect((await collectPrefill(a.fetchKv({ kvHandle: held.kvHandle }))).layers).toHaveLength(2);
      clock += 2;
      await expectOpalError(
        collectPrefill(a.fetchKv({ kvHandle: held.kvHandle })),
        Code.NOT_FOUND,
        "KV_HANDLE_EXPIRED",
      );
      expect(await a.releaseKv(held.kvHandle)).toEqual({ released: false });
      expect(mock.device.stats.retainedKvBytes).toBe(0);
      // A lease longer than the device allows is refused up front, without RetryInfo (ERR-4).
      const error = await expectOpalError(
        collectPrefill(a.prefill(tinyRequest({ retentionSeconds: 6 }))),
        Code.RESOURCE_EXHAUSTED,
        "RETENTION_LIMIT_EXCEEDED",
      );
      expect(error.retryDelayMs).toBeUndefined();
    } finally {
      await a.close();
      await mock.close({ graceMs: 0 });
    }
  });
});

describe("prompt-token limit over the wire (PROMPT_TOO_LONG)", () => {
  it("rejects one token past the device limit and past the model's context, naming both numbers and no token", async () => {
    const mock = await serveMockDevice(
      { models: ["opal-tiny"], limits: { maxPromptTokens: 64 } },
      { auth: { tokens: TOKENS } },
    );
    const a = createDeviceClient(mock.address, { token: A });
    try {
      expect((await a.getCapabilities()).maxPromptTokens).toBe(64);
      await collectPrefill(a.prefill(tinyRequest({}, { length: 64 })));
      const error = await expectOpalError(
        collectPrefill(a.prefill(tinyRequest({}, { length: 65 }))),
        Code.INVALID_ARGUMENT,
        "PROMPT_TOO_LONG",
      );
      expect(error.fieldViolations[0]?.field).toBe("prompt_token_ids");
      expect(error.message).toMatch(/64\b.*65\b/);
      expect(mock.device.stats.prefillsStarted).toBe(1);
    } finally {
      await a.close();
      await mock.close({ graceMs: 0 });
    }
    // opal-tiny's context is 4,096 tokens: a device allowing 8,192 still refuses 4,097.
    const wide = await serveMockDevice({ models: ["opal-tiny"] });
    const client = createDeviceClient(wide.address);
    try {
      const error = await expectOpalError(
        collectPrefill(client.prefill(tinyRequest({}, { length: 4097 }))),
        Code.INVALID_ARGUMENT,
        "PROMPT_TOO_LONG",
      );
      expect(error.message).toContain("4096");
    } finally {
      await client.close();
      await wide.close({ graceMs: 0 });
    }
  });
});

describe("secrets never logged (SEC-14, RT-10, PS-2)", () => {
  it("logs failed authentication, foreign handles and rejected pushes without a token, a push token or a full handle", async () => {
    const memory = createMemoryLogger();
    let clock = Date.now();
    const mock = await serveMockDevice(
      { models: ["opal-tiny"], now: () => clock },
      { auth: { tokens: TOKENS }, logger: memory.logger },
    );
    const receiver = await createKvReceiver({
      tokens: ["push-secret-4b1f0e"],
      createSink: () => createMemorySink(),
    });
    const a = createDeviceClient(mock.address, { token: A });
    const b = createDeviceClient(mock.address, { token: B });
    const forger = createDeviceClient(mock.address, { token: "forged-token-99c1d7" });
    const handles: string[] = [];
    const errors: Error[] = [];
    try {
      errors.push((await forger.getInfo().catch((e: Error) => e)) as Error);
      errors.push((await settle(forger.prefill(tinyRequest()))) as Error);
      const held = await collectPrefill(a.prefill(tinyRequest({ retentionSeconds: 2 })));
      handles.push(held.kvHandle);
      errors.push((await settle(b.fetchKv({ kvHandle: held.kvHandle }))) as Error);
      expect(await b.releaseKv(held.kvHandle)).toEqual({ released: false });
      const pushed = (token: string, transferId: string) =>
        pushPrefill(
          a,
          tinyRequest({
            retentionSeconds: 2,
            pushTarget: { address: receiver.address, transferId, authorizationToken: token },
          }),
          { retry: { maxAttempts: 1 } },
        );
      await pushed("push-secret-4b1f0e", "logged-1");
      errors.push((await pushed("push-secret-4b1f0f", "logged-2").catch((e: Error) => e)) as Error);
      clock += 3_000;
      errors.push((await settle(a.fetchKv({ kvHandle: held.kvHandle }))) as Error);
    } finally {
      await a.close();
      await b.close();
      await forger.close();
      await receiver.close();
      await mock.close({ graceMs: 0 });
    }
    const logged = memory.text();
    // The failures were logged (at debug), so the absence below means something.
    for (const reason of [
      "TOKEN_INVALID",
      "KV_HANDLE_NOT_FOUND",
      "PUSH_REJECTED",
      "KV_HANDLE_EXPIRED",
    ])
      expect(logged).toContain(reason);
    const secrets = [
      A,
      B,
      "forged-token-99c1d7",
      "push-secret-4b1f0e",
      "push-secret-4b1f0f",
      ...handles,
    ];
    for (const secret of secrets) expect(logged).not.toContain(secret);
    // Nor do the errors callers see carry a secret (SEC-8).
    expect(errors.every((e) => e instanceof Error)).toBe(true);
    const seen = errors.map((e) => `${e.message} ${JSON.stringify(e)}`).join("\n");
    for (const secret of secrets) expect(seen).not.toContain(secret);
  });
});

describe("payloads are data, never code (SEC-9)", () => {
  const canary = join(tmpdir(), `opal-sec9-canary-${process.pid}`);
  const hostileMetadata = {
    format: "pt",
    // A pickle stream calling os.system; Python's pickle would run it, OPAL never unpickles.
    pickle: `cos\nsystem\n(S'touch ${canary}'\ntR.`,
    javascript: `require("node:fs").writeFileSync(${JSON.stringify(canary)}, "x"); globalThis.opalPwned = true`,
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a template placeholder as data, the point of the test
    template: "${globalThis.opalPwned = true}",
    json: '{"__proto__": {"opalPwned": true}}',
  };

  it("keeps a hostile safetensors __metadata__ and a config naming remote code as plain strings, end to end", async () => {
    const { configJson, safetensors } = encodeHfCheckpoint(createPresetWeights("opal-tiny"));
    const hostile = encodeSafetensors(decodeSafetensors(safetensors).tensors, {
      metadata: hostileMetadata,
    });
    // The decoder returns the strings, byte for byte, and evaluates none of them.
    expect(decodeSafetensors(hostile).metadata).toEqual(hostileMetadata);
    // A config asking for remote code: the fields are ignored, nothing is fetched or run (SEC-9).
    const config = {
      ...JSON.parse(configJson),
      auto_map: { AutoModelForCausalLM: "evil_module.EvilModel" },
      trust_remote_code: true,
    };
    const mock = await serveMockDevice({ models: [] });
    const client = createDeviceClient(mock.address);
    try {
      const loaded = await client.loadModel({
        modelId: "hostile-metadata",
        configJson: JSON.stringify(config),
        weightsByteLength: hostile.byteLength,
        weights: (async function* () {
          yield hostile;
        })(),
      });
      expect(loaded.model.numLayers).toBe(2);
      const outcome = await startPrefill(client, tinyRequest({ modelId: "hostile-metadata" }))
        .result;
      expect(outcome.stats.promptTokens).toBe(48);
    } finally {
      await client.close();
      await mock.close({ graceMs: 0 });
    }
    expect((globalThis as { opalPwned?: boolean }).opalPwned).toBeUndefined();
    expect(({} as { opalPwned?: boolean }).opalPwned).toBeUndefined();
    expect(existsSync(canary)).toBe(false);
  });
});
