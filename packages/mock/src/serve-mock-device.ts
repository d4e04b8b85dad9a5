import { readFile } from "node:fs/promises";
import { Code, OpalError, Reason, sleep } from "@opal/core";
import { createDeviceServer, type DeviceServer, type DeviceServerOptions } from "@opal/server";
import { parse as parseYaml } from "yaml";
import { createMockDevice } from "./create-mock-device";
import { assertFaultConfig, type FaultConfig } from "./fault-config";
import type { MockDevice, MockDeviceOptions } from "./mock-device";

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
   * Once `close()` has begun, rejects with UNAVAILABLE `SHUTTING_DOWN` and listens no more.
   */
  restart(): Promise<void>;
  /**
   * Graceful shutdown of the server (running calls get `graceMs`), then the device. A
   * dropped-connection fault during the grace period ends its call without a restart.
   */
  close(options?: { readonly graceMs?: number }): Promise<void>;
}

/** Starts a mock device and serves it; `server` options go to `createDeviceServer`. */
export async function serveMockDevice(
  device: MockDeviceOptions = {},
  server: DeviceServerOptions = {},
): Promise<MockServer> {
  let restarting: Promise<void> | undefined;
  let closing = false;
  const mock = createMockDevice({ ...device, onConnectionDrop: () => restart() });
  let host = await createDeviceServer(mock, server);
  const port = host.port;

  function restart(): Promise<void> {
    if (closing) {
      return Promise.reject(
        new OpalError(Code.UNAVAILABLE, "the mock server is closed", {
          reason: Reason.SHUTTING_DOWN,
        }),
      );
    }
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
      closing = true;
      // A restart under way ends first, so the server shut down is the last one.
      await restarting?.catch(() => {});
      await host.shutdown(options);
      await mock.close();
    },
  };
}

/**
 * Reads a fault configuration file (YAML or JSON, see docs/guides/mock.md) and checks it as
 * `createMockDevice` would. Throws INVALID_ARGUMENT naming the file when it cannot be read or
 * parsed, or is not a valid {@link FaultConfig} (then naming the field too).
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
  try {
    assertFaultConfig(value);
  } catch (error) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `fault config ${path}: ${OpalError.from(error).rawMessage}`,
      { cause: error },
    );
  }
  return value;
}
