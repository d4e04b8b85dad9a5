import { once } from "node:events";
import { connect, type IncomingHttpHeaders } from "node:http2";
import type { ServiceError } from "@grpc/grpc-js";
import { createDeviceClient } from "@opal/client";
import { Code, type OpalError } from "@opal/core";
import type { PrefillDriver } from "@opal/driver";
import { createMockDevice } from "@opal/mock";
import { decodeStatus, STATUS_DETAILS_TRAILER } from "@opal/protocol";
import {
  createHealthClient,
  createReflectionClient,
  expectOpalError,
  type HealthStatus,
  loadReflectedDefinitions,
} from "@opal/testing";
import { describe, expect, it } from "vitest";
import { createDeviceServer, DEVICE_SERVICE_NAME, type DeviceServer } from "../src/index";
import { drainIterator, readEvents, tinyRequest } from "./fixtures";

/**
 * Opens a call of each of `methods` without credentials over raw HTTP/2 (HEADERS) before the
 * server's shutdown begins, sends their messages after it began, and resolves with each status.
 */
async function statusesDuringShutdown(
  server: DeviceServer,
  methods: readonly string[],
): Promise<Array<{ code: string; details: Buffer | undefined }>> {
  const session = connect(`http://${server.address}`);
  try {
    await once(session, "connect");
    const streams = methods.map((method) =>
      session.request({
        ":method": "POST",
        ":path": `/${DEVICE_SERVICE_NAME}/${method}`,
        "content-type": "application/grpc",
        te: "trailers",
      }),
    );
    // A PING is answered after the server processed the HEADERS frames sent before it.
    await new Promise<void>((resolve, reject) =>
      session.ping((error) => (error ? reject(error) : resolve())),
    );
    const down = server.shutdown({ graceMs: 5_000 });
    const emptyMessage = Buffer.alloc(5); // uncompressed, length 0
    const statuses = await Promise.all(
      streams.map(
        (stream) =>
          new Promise<{ code: string; details: Buffer | undefined }>((resolve, reject) => {
            // The status comes in trailers, or in the headers of a trailers-only response.
            const onStatus = (headers: IncomingHttpHeaders) => {
              const details = headers[STATUS_DETAILS_TRAILER];
              if (headers["grpc-status"] === undefined) return;
              resolve({
                code: String(headers["grpc-status"]),
                details: typeof details === "string" ? Buffer.from(details, "base64") : undefined,
              });
            };
            stream.on("response", onStatus);
            stream.on("trailers", onStatus);
            stream.on("error", reject);
            stream.resume();
            stream.end(emptyMessage);
          }),
      ),
    );
    await down;
    return statuses;
  } finally {
    session.destroy();
  }
}

const HEALTH = "grpc.health.v1.Health";
const REFLECTION_V1 = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA = "grpc.reflection.v1alpha.ServerReflection";

describe("health (GEN-9)", () => {
  it("reports SERVING for the server and the device service, NOT_FOUND for others", async () => {
    const server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }));
    const health = createHealthClient(server.address);
    try {
      expect(await health.check("")).toBe("SERVING");
      expect(await health.check(DEVICE_SERVICE_NAME)).toBe("SERVING");
      const unknown = await health.check("no.such.Service").catch((e: ServiceError) => e);
      expect((unknown as ServiceError).code).toBe(Code.NOT_FOUND);
    } finally {
      health.close();
      await server.shutdown({ graceMs: 0 });
    }
  });

  it("agrees with Probe: NOT_SERVING while the device fails or initialises, each transition watched (ID-12)", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    let initializing = false;
    const driver = new Proxy(device, {
      get(target, key, receiver) {
        if (key === "probe" && initializing) return async () => "initializing" as const;
        return Reflect.get(target, key, receiver);
      },
    }) as PrefillDriver;
    const server = await createDeviceServer(driver, { healthPollIntervalMs: 20 });
    const health = createHealthClient(server.address);
    const client = createDeviceClient(server.address);
    const watchStop = new AbortController();
    const watched: HealthStatus[] = [];
    const watching = (async () => {
      for await (const status of health.watch("", watchStop.signal)) watched.push(status);
    })().catch(() => undefined);
    try {
      await expect.poll(() => watched).toEqual(["SERVING"]);
      // A faulted device: Probe fails, and health says NOT_SERVING.
      device.setFaults({ errors: { Probe: { rate: 1, code: "UNAVAILABLE" } } });
      await expectOpalError(client.probe(), Code.UNAVAILABLE, "DEVICE_FAULT");
      expect(await health.check(DEVICE_SERVICE_NAME)).toBe("NOT_SERVING");
      await expect.poll(() => watched).toEqual(["SERVING", "NOT_SERVING"]);
      device.setFaults({});
      expect(await client.probe()).toBe("ready");
      expect(await health.check("")).toBe("SERVING");
      await expect.poll(() => watched).toEqual(["SERVING", "NOT_SERVING", "SERVING"]);
      // An initialising device answers Probe, but is not SERVING.
      initializing = true;
      expect(await client.probe()).toBe("initializing");
      expect(await health.check("")).toBe("NOT_SERVING");
      await expect.poll(() => watched).toHaveLength(4);
      expect(watched[3]).toBe("NOT_SERVING");
      // Unknown service names are SERVICE_UNKNOWN to a watcher.
      const unknown: HealthStatus[] = [];
      const stopUnknown = new AbortController();
      const watchingUnknown = (async () => {
        for await (const status of health.watch("no.such.Service", stopUnknown.signal))
          unknown.push(status);
      })();
      await expect.poll(() => unknown).toEqual(["SERVICE_UNKNOWN"]);
      stopUnknown.abort();
      await watchingUnknown;
    } finally {
      watchStop.abort();
      await watching;
      health.close();
      await client.close();
      await server.shutdown({ graceMs: 0 });
    }
  });

  it("turns NOT_SERVING on shutdown, refuses new connections, cancels held streams after the grace period", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    const server = await createDeviceServer(device);
    const health = createHealthClient(server.address);
    const client = createDeviceClient(server.address);
    const watchStop = new AbortController();
    const watched: HealthStatus[] = [];
    const watching = (async () => {
      for await (const status of health.watch(DEVICE_SERVICE_NAME, watchStop.signal))
        watched.push(status);
    })().then(
      () => undefined,
      (error: ServiceError) => error,
    );
    try {
      await expect.poll(() => watched).toEqual(["SERVING"]);
      // Hold a prefill: accepted + one chunk arrive, then the device stalls for 30 s.
      device.setFaults({ stallAfterChunks: 1, stallMs: 30_000 });
      const held = await readEvents(client.prefill(tinyRequest()), 2);
      expect(held.seen.map((e) => e.type)).toEqual(["accepted", "chunk"]);
      expect(device.stats.activePrefills).toBe(1);

      const graceMs = 400;
      const startedMs = performance.now();
      const down = server.shutdown({ graceMs });
      // A watcher connected before shutdown sees the status change (GEN-9)…
      await expect.poll(() => watched).toEqual(["SERVING", "NOT_SERVING"]);
      // …while a new Check cannot reach the server any more: grpc-js stops listening at once and
      // sends GOAWAY, so a fresh channel and the existing one both fail with UNAVAILABLE (a
      // refused connection). Either that or NOT_SERVING is a conforming outcome; this is grpc-js's.
      const fresh = createHealthClient(server.address, { timeoutMs: 2_000 });
      for (const probe of [fresh, health]) {
        const outcome = await probe.check("").then(
          (status) => status,
          (e: ServiceError) => e.code,
        );
        expect(outcome).toBe(Code.UNAVAILABLE);
      }
      fresh.close();

      // The held stream survives the grace period, then ends UNAVAILABLE SHUTTING_DOWN.
      const error = await expectOpalError(held.iterator.next(), Code.UNAVAILABLE, "SHUTTING_DOWN");
      expect(error.retryDelayMs).toBeGreaterThan(0);
      expect(performance.now() - startedMs).toBeGreaterThanOrEqual(graceMs - 20);
      await down;
      expect(performance.now() - startedMs).toBeLessThan(graceMs + 2_000);
      // Watch streams never finish on their own: they end with the same status.
      expect((await watching)?.code).toBe(Code.UNAVAILABLE);
      await expect.poll(() => device.stats.activePrefills).toBe(0);
      // Idempotent: a second shutdown resolves at once.
      await server.shutdown();
    } finally {
      watchStop.abort();
      await watching;
      health.close();
      await client.close();
    }
  });

  it("lets a stream that ends within the grace period finish normally", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    const server = await createDeviceServer(device);
    const client = createDeviceClient(server.address);
    try {
      device.setFaults({ stallAfterChunks: 1, stallMs: 300 });
      const held = await readEvents(client.prefill(tinyRequest()), 2);
      const down = server.shutdown({ graceMs: 10_000 });
      const rest = await drainIterator(held.iterator);
      expect(rest.at(-1)?.type).toBe("completed");
      await down;
    } finally {
      await client.close();
    }
  });

  it("refuses calls that arrive during the grace period with SHUTTING_DOWN, except GetInfo", async () => {
    const server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }));
    const [getInfo, probe] = await statusesDuringShutdown(server, ["GetInfo", "Probe"]);
    expect(getInfo!.code).toBe(String(Code.OK));
    expect(probe!.code).toBe(String(Code.UNAVAILABLE));
    expect(decodeStatus(probe!.details!).reason).toBe("SHUTTING_DOWN");
  });

  it("authenticates calls that arrive during the grace period first (PF-1 stage 1 before 2)", async () => {
    const server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }), {
      auth: { tokens: { "t-a": "tenant-a" } },
    });
    const statuses = await statusesDuringShutdown(server, ["GetInfo", "Probe"]);
    for (const status of statuses) {
      expect(status.code).toBe(String(Code.UNAUTHENTICATED));
      expect(decodeStatus(status.details!).reason).toBe("TOKEN_INVALID");
    }
  });

  it("ends Watch and WatchTelemetry streams at once on shutdown, so they never hold the drain (TM-4)", async () => {
    const server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }));
    const health = createHealthClient(server.address);
    const client = createDeviceClient(server.address);
    const stop = new AbortController();
    const watched: HealthStatus[] = [];
    const watching = (async () => {
      for await (const status of health.watch(DEVICE_SERVICE_NAME, stop.signal))
        watched.push(status);
    })().then(
      () => undefined,
      (error: ServiceError) => error,
    );
    const unknownWatched: HealthStatus[] = [];
    const watchingUnknown = (async () => {
      for await (const status of health.watch("no.such.Service", stop.signal))
        unknownWatched.push(status);
    })().then(
      () => undefined,
      (error: ServiceError) => error,
    );
    let snapshots = 0;
    const telemetry = (async () => {
      for await (const _ of client.watchTelemetry({ intervalMs: 50 }, { signal: stop.signal }))
        snapshots++;
    })().then(
      () => undefined,
      (error: OpalError) => error,
    );
    try {
      await expect.poll(() => watched).toEqual(["SERVING"]);
      await expect.poll(() => unknownWatched).toEqual(["SERVICE_UNKNOWN"]);
      await expect.poll(() => snapshots).toBeGreaterThan(0);
      const startedMs = performance.now();
      await server.shutdown({ graceMs: 10_000 });
      expect(performance.now() - startedMs).toBeLessThan(2_000);
      // The watcher saw the transition first, then its stream ended.
      expect(watched).toEqual(["SERVING", "NOT_SERVING"]);
      expect((await watching)?.code).toBe(Code.UNAVAILABLE);
      expect((await watchingUnknown)?.code).toBe(Code.UNAVAILABLE);
      const ended = await telemetry;
      expect({ code: ended?.code, reason: ended?.reason }).toEqual({
        code: Code.UNAVAILABLE,
        reason: "SHUTTING_DOWN",
      });
    } finally {
      stop.abort();
      await watching;
      await watchingUnknown;
      await telemetry;
      health.close();
      await client.close();
    }
  });

  it("finishes without waiting for the grace period when no call is open", async () => {
    const server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }));
    const startedMs = performance.now();
    await server.shutdown({ graceMs: 10_000 });
    expect(performance.now() - startedMs).toBeLessThan(2_000);
  });
});

describe("reflection (GEN-9)", () => {
  it.each(["v1", "v1alpha"] as const)(
    "%s lists exactly the served services and describes the device service",
    async (version) => {
      const server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }));
      const reflection = createReflectionClient(server.address, { version });
      try {
        expect((await reflection.listServices()).sort()).toEqual(
          [DEVICE_SERVICE_NAME, HEALTH, REFLECTION_V1, REFLECTION_V1ALPHA].sort(),
        );
        const files = await reflection.fileContainingSymbol(DEVICE_SERVICE_NAME);
        expect(files.length).toBeGreaterThan(0);
        // A dynamic client can rebuild the service from the reflected descriptors alone.
        const definitions = loadReflectedDefinitions(files);
        const service = definitions[DEVICE_SERVICE_NAME] as Record<string, { path: string }>;
        expect(service.Prefill?.path).toBe(`/${DEVICE_SERVICE_NAME}/Prefill`);
        expect(Object.keys(service)).toEqual(
          expect.arrayContaining(["GetInfo", "GetCapabilities", "Probe", "FetchKv", "ReleaseKv"]),
        );
        await expect(reflection.fileContainingSymbol("no.such.Symbol")).rejects.toThrow(
          /reflection error 5/,
        );
      } finally {
        reflection.close();
        await server.shutdown({ graceMs: 0 });
      }
    },
  );
});
