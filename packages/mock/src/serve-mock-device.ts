import { readFile } from "node:fs/promises";
import { Code, OpalError, sleep } from "@opal/core";
import { createDeviceServer, type DeviceServer, type DeviceServerOptions } from "@opal/server";
import { parse as parseYaml } from "yaml";
import { createMockDevice, type MockDevice, type MockDeviceOptions } from "./create-mock-device";
import type { FaultConfig } from "./fault-injector";

/** A mock device served over gRPC. */
export interface MockServer {
  readonly device: MockDevice;
  /** The current server (a new one after each restart). */
  readonly server: DeviceServer;
  /** `host:port`; stable across restarts. */
  readonly address: string;
  /**
   * Drops every connection and listens again on the same port, as a device that was killed and
   * restarted (running calls fail with UNAVAILABLE). Retained caches survive: the device is the same.
   */
  restart(): Promise<void>;
  /** Graceful shutdown of the server, then the device. */
  close(options?: { readonly graceMs?: number }): Promise<void>;
}

/** Starts a mock device and serves it; `server` options go to `createDeviceServer`. */
export async function serveMockDevice(
  device: MockDeviceOptions = {},
  server: DeviceServerOptions = {},
): Promise<MockServer> {
  let restarting: Promise<void> | undefined;
  const mock = createMockDevice({ ...device, onConnectionDrop: () => restart() });
  let host = await createDeviceServer(mock, server);
  const port = host.port;

  function restart(): Promise<void> {
    restarting ??= (async () => {
      await host.shutdown({ graceMs: 0 });
      // The port is released asynchronously after the listener closes: retry briefly.
      for (let attempt = 0; ; attempt++) {
        try {
          host = await createDeviceServer(mock, { ...server, port });
          return;
        } catch (error) {
          if (attempt >= 50) throw error;
          await sleep(20);
        }
      }
    })().finally(() => {
      restarting = undefined;
    });
    return restarting;
  }

  return {
    device: mock,
    get server() {
      return host;
    },
    address: host.address,
    restart,
    async close(options) {
      await restarting;
      await host.shutdown(options);
      await mock.close();
    },
  };
}

/**
 * Reads a fault configuration file (YAML or JSON, see docs/guides/mock.md). Throws INVALID_ARGUMENT
 * naming the file when it cannot be read or parsed.
 */
export async function readFaultConfig(path: string): Promise<FaultConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `cannot read fault config ${path}: ${(error as Error).message}`,
    );
  }
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (error) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `fault config ${path} is not valid YAML/JSON: ${(error as Error).message}`,
    );
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `fault config ${path} must be a mapping (got ${JSON.stringify(value)})`,
    );
  }
  return value as FaultConfig;
}
