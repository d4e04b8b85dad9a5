import { createDeviceClient, type DeviceClient } from "@opal/client";
import { Code, type OpalError } from "@opal/core";
import { createMockDevice } from "@opal/mock";
import { collectPrefill, createHealthClient, expectOpalError } from "@opal/testing";
import { describe, expect, it } from "vitest";
import { createDeviceServer } from "../src/index";
import { readEvents, tinyRequest } from "./fixtures";

const TOKENS = { "t-a": "tenant-a", "t-b": "tenant-b" };

describe("per-tenant limits (SEC-12)", () => {
  it("rate-limits a tenant's 6th quick call with RATE_LIMITED and a retry delay, leaving other tenants alone", async () => {
    const server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }), {
      auth: { tokens: TOKENS },
      limits: { requestsPerSecondPerTenant: 5, burstRequests: 5 },
    });
    const a = createDeviceClient(server.address, { token: "t-a" });
    const b = createDeviceClient(server.address, { token: "t-b" });
    // Connect first (health is not rate-limited), so the burst below is quick.
    const health = createHealthClient(server.address);
    await health.check("");
    health.close();
    try {
      // Each client's protocol version read (VER-2), then the token it took refilled (5 per second).
      await a.getInfo();
      await b.getInfo();
      await new Promise((resolve) => setTimeout(resolve, 250));
      // Six quick calls (sent at once, so no token is refilled in between): five pass, one fails.
      const outcomes = await Promise.all(
        Array.from({ length: 6 }, () =>
          a.probe().then(
            () => undefined,
            (e: OpalError) => e,
          ),
        ),
      );
      const failures = outcomes.filter((o) => o !== undefined);
      expect(outcomes.length - failures.length).toBe(5);
      expect(failures).toHaveLength(1);
      const error = failures[0]!;
      expect({ code: error.code, reason: error.reason }).toEqual({
        code: Code.RESOURCE_EXHAUSTED,
        reason: "RATE_LIMITED",
      });
      expect(error.retryDelayMs).toBeGreaterThan(0);
      expect(error.retryDelayMs).toBeLessThanOrEqual(200);
      // Another tenant has its own bucket.
      const others = await Promise.all(Array.from({ length: 5 }, () => b.probe()));
      expect(others).toEqual(Array(5).fill("ready"));
      // The bucket refills at the sustained rate: after the advertised delay, A is served again.
      await new Promise((resolve) => setTimeout(resolve, error.retryDelayMs! + 10));
      expect(await a.probe()).toBe("ready");
    } finally {
      await a.close();
      await b.close();
      await server.shutdown({ graceMs: 0 });
    }
  });

  it("counts streaming calls against the rate like unary ones", async () => {
    const server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }), {
      limits: { requestsPerSecondPerTenant: 1, burstRequests: 1 },
    });
    const client = createDeviceClient(server.address);
    try {
      await client.getInfo(); // a unary call, which also serves as the version read (VER-2)
      const error = await expectOpalError(
        collectPrefill(client.prefill(tinyRequest())),
        Code.RESOURCE_EXHAUSTED,
        "RATE_LIMITED",
      );
      expect(error.retryDelayMs).toBeGreaterThan(0);
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });

  it("holds a tenant to maxConcurrentPrefillsPerTenant with TENANT_QUOTA_EXCEEDED until its prefill ends", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    const server = await createDeviceServer(device, {
      auth: { tokens: TOKENS },
      limits: { maxConcurrentPrefillsPerTenant: 1 },
    });
    const a = createDeviceClient(server.address, { token: "t-a" });
    const b = createDeviceClient(server.address, { token: "t-b" });
    try {
      device.setFaults({ stallAfterChunks: 1, stallMs: 30_000 });
      const held = await readEvents(a.prefill(tinyRequest()), 2);
      device.setFaults({});
      const error = await expectOpalError(
        collectPrefill(a.prefill(tinyRequest())),
        Code.RESOURCE_EXHAUSTED,
        "TENANT_QUOTA_EXCEEDED",
      );
      expect(error.retryDelayMs).toBeGreaterThan(0);
      // FetchKv streams share the quota.
      await expectOpalError(
        collectPrefill(a.fetchKv({ kvHandle: "whatever" })),
        Code.RESOURCE_EXHAUSTED,
        "TENANT_QUOTA_EXCEEDED",
      );
      // Another tenant is not held back.
      await collectPrefill(b.prefill(tinyRequest()));
      // The held prefill ends (the caller cancels it): the tenant's slot comes back.
      await held.iterator.return?.();
      await expect
        .poll(() =>
          collectPrefill(a.prefill(tinyRequest())).then(
            () => "ok",
            (e: { reason?: string }) => e.reason,
          ),
        )
        .toBe("ok");
      expect(device.stats.activePrefills).toBe(0);
    } finally {
      await a.close();
      await b.close();
      await server.shutdown({ graceMs: 0 });
    }
  });
});

describe("admission after the request's own checks (PF-1 stages 4-6, PF-7)", () => {
  it("answers a tenant at its limit with the request's own errors before TENANT_QUOTA_EXCEEDED", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    const server = await createDeviceServer(device, {
      limits: { maxConcurrentPrefillsPerTenant: 1 },
    });
    const client = createDeviceClient(server.address);
    try {
      device.setFaults({ stallAfterChunks: 1, stallMs: 30_000 });
      const held = await readEvents(client.prefill(tinyRequest()), 2);
      await expectOpalError(
        collectPrefill(client.prefill(tinyRequest({ modelId: "no-such-model" }))),
        Code.FAILED_PRECONDITION,
        "MODEL_NOT_LOADED",
      );
      const outOfRange = await expectOpalError(
        collectPrefill(client.prefill(tinyRequest({ promptTokenIds: Uint32Array.of(1, 1 << 30) }))),
        Code.INVALID_ARGUMENT,
        "TOKEN_OUT_OF_RANGE",
      );
      expect(outOfRange.fieldViolations[0]?.field).toBe("prompt_token_ids[1]");
      await expectOpalError(
        collectPrefill(client.fetchKv({ kvHandle: "x".repeat(129) })),
        Code.INVALID_ARGUMENT,
        "INVALID_FIELD",
      );
      // A valid request is refused for the quota, with nothing computed.
      await expectOpalError(
        collectPrefill(client.prefill(tinyRequest())),
        Code.RESOURCE_EXHAUSTED,
        "TENANT_QUOTA_EXCEEDED",
      );
      expect(device.stats.activePrefills).toBe(1);
      await held.iterator.return?.();
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });

  it("serves a retry with the same request_id and body at the tenant's limit, cancelling the first call", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    const server = await createDeviceServer(device, {
      limits: { maxConcurrentPrefillsPerTenant: 1 },
    });
    const client = createDeviceClient(server.address);
    try {
      device.setFaults({ stallAfterChunks: 1, stallMs: 30_000 });
      const request = tinyRequest();
      const first = await readEvents(client.prefill(request), 2);
      device.setFaults({});
      const retry = await collectPrefill(client.prefill(request));
      expect(retry.stats.promptTokens).toBe(32);
      // (The SDK reports a call the device ended with CANCELLED as a reset call.)
      await expect(first.iterator.next()).rejects.toThrow(/superseded by a retry/);
      // The first call's slot went to the retry, and came back when the retry ended.
      await expect.poll(() => device.stats.activePrefills).toBe(0);
      await collectPrefill(client.prefill(tinyRequest()));
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });

  it("keeps a running call supersedable when the same request_id comes with another body (PF-6, PF-7)", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    const server = await createDeviceServer(device);
    const client = createDeviceClient(server.address);
    try {
      device.setFaults({ stallAfterChunks: 1, stallMs: 30_000 });
      const request = tinyRequest();
      const first = await readEvents(client.prefill(request), 2);
      device.setFaults({});
      await expectOpalError(
        collectPrefill(client.prefill({ ...request, cacheSalt: "another body" })),
        Code.ALREADY_EXISTS,
        "REQUEST_ID_CONFLICT",
      );
      // A retry of the first body still ends the first call: it is computed once at a time.
      await collectPrefill(client.prefill(request));
      // (The SDK reports a call the device ended with CANCELLED as a reset call.)
      await expect(first.iterator.next()).rejects.toThrow(/superseded by a retry/);
      await expect.poll(() => device.stats.activePrefills).toBe(0);
    } finally {
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });
});

describe("message size (TR-2)", () => {
  it("fails a client whose receive limit is below the chunk size with RESOURCE_EXHAUSTED and frees the device", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    const server = await createDeviceServer(device);
    let small: DeviceClient | undefined;
    try {
      small = createDeviceClient(server.address, { channel: { maxMessageBytes: 2048 } });
      const error = await expectOpalError(
        collectPrefill(small.prefill(tinyRequest({ maxChunkBytes: 4096 }))),
        Code.RESOURCE_EXHAUSTED,
      );
      // grpc-js checks the length prefix before buffering and fails the call on the client side:
      // the device never sent an oversized message, so no device status (or reason) is involved.
      expect(error.message).toMatch(/Received message larger than max \(\d+ vs 2048\)/);
      await expect.poll(() => device.stats.activePrefills).toBe(0);
    } finally {
      await small?.close();
      await server.shutdown({ graceMs: 0 });
    }
  });
});
