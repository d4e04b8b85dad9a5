import { once } from "node:events";
import { createServer, type Server } from "node:net";
import { Code } from "@opal/core";
import { createMockDevice } from "@opal/mock";
import { expectOpalError } from "@opal/testing";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { createDeviceServer, DEFAULT_TRANSPORT } from "../src/index";

/** A TCP listener on a free loopback port, to make that port busy. */
async function occupyPort(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { port: (server.address() as { port: number }).port, server };
}

const closeServer = (server: Server) => new Promise((resolve) => server.close(resolve));

describe("server lifecycle", () => {
  it("binds 127.0.0.1 on a free port by default and reports it", async () => {
    const server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }));
    expect(server.address).toBe(`127.0.0.1:${server.port}`);
    expect(server.port).toBeGreaterThan(0);
    await server.shutdown({ graceMs: 0 });
  });

  it("says at start-up when it does not authenticate callers (SEC-5)", async () => {
    const lines: string[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => lines.push(line) });
    const open = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }), { logger });
    const closed = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }), {
      logger,
      auth: { tokens: { t: "tenant-a" } },
    });
    await open.shutdown({ graceMs: 0 });
    await closed.shutdown({ graceMs: 0 });
    const listening = lines
      .map((line) => JSON.parse(line) as { msg: string; authenticated?: boolean })
      .filter((entry) => entry.msg.startsWith("device server listening"));
    expect(listening.map((entry) => entry.authenticated)).toEqual([false, true]);
    expect(listening[0]!.msg).toContain('without authentication: every caller is tenant "default"');
  });

  it("rejects with UNAVAILABLE when its port is taken", async () => {
    const busy = await occupyPort();
    try {
      const error = await expectOpalError(
        createDeviceServer(createMockDevice({ models: ["opal-tiny"] }), { port: busy.port }),
        Code.UNAVAILABLE,
      );
      expect(error.message).toContain(`127.0.0.1:${busy.port}`);
    } finally {
      await closeServer(busy.server);
    }
  });

  it("releases the gRPC port when the metrics port is taken", async () => {
    const busy = await occupyPort();
    const free = await occupyPort();
    await closeServer(free.server);
    try {
      await expectOpalError(
        createDeviceServer(createMockDevice({ models: ["opal-tiny"] }), {
          port: free.port,
          metricsPort: busy.port,
        }),
        Code.UNAVAILABLE,
      );
      // The gRPC port it had bound is free again.
      const again = createServer().listen(free.port, "127.0.0.1");
      await once(again, "listening");
      await closeServer(again);
    } finally {
      await closeServer(busy.server);
    }
  });

  it("uses the protocol's recommended transport settings by default (TR-1, TR-4, TR-5)", () => {
    expect(DEFAULT_TRANSPORT).toEqual({
      flowControlWindowBytes: 16 * 1024 * 1024,
      keepaliveMinPingIntervalMs: 10_000,
      keepaliveTimeMs: 60_000,
      keepaliveTimeoutMs: 20_000,
      maxConcurrentStreamsPerConnection: 256,
      maxConnectionIdleMs: 600_000,
    });
  });
});
