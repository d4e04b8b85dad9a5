import { Code } from "@opal/core";
import { createMockDevice } from "@opal/mock";
import { expectOpalError } from "@opal/testing";
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { createDeviceServer } from "../src/create-device-server";
import type { DeviceServerOptions } from "../src/server-options";

const device = createMockDevice({ models: ["opal-tiny"] });
const logger = pino({ level: "silent" });
afterAll(() => device.close());

describe("timer options are integers setTimeout honours (up to 2^31 - 1 ms)", () => {
  it.each([
    ["limits.streamStallTimeoutMs", { limits: { streamStallTimeoutMs: 2 ** 31 } }, 1, 2 ** 31],
    ["limits.uploadIdleTimeoutMs", { limits: { uploadIdleTimeoutMs: 2 ** 40 } }, 1, 2 ** 40],
    ["shutdownGraceMs", { shutdownGraceMs: 2 ** 31 }, 0, 2 ** 31],
    ["shutdownGraceMs", { shutdownGraceMs: -1 }, 0, -1],
    ["healthPollIntervalMs", { healthPollIntervalMs: 2 ** 31 }, 1, 2 ** 31],
    ["healthPollIntervalMs", { healthPollIntervalMs: 0.5 }, 1, 0.5],
  ] as [string, DeviceServerOptions, number, number][])(
    "refuses %s %j naming the option, the range and the value",
    async (field, options, min, value) => {
      const error = await expectOpalError(
        createDeviceServer(device, { ...options, logger }),
        Code.INVALID_ARGUMENT,
        "INVALID_FIELD",
      );
      expect(error.rawMessage).toBe(
        `${field}: expected an integer from ${min} to ${2 ** 31 - 1}, got ${value}`,
      );
    },
  );

  it("accepts 2^31 - 1 and refuses a shutdown graceMs beyond it", async () => {
    const server = await createDeviceServer(device, {
      logger,
      shutdownGraceMs: 2 ** 31 - 1,
      healthPollIntervalMs: 2 ** 31 - 1,
      limits: { streamStallTimeoutMs: 2 ** 31 - 1, uploadIdleTimeoutMs: 2 ** 31 - 1 },
    });
    const error = await expectOpalError(
      server.shutdown({ graceMs: 2 ** 31 }),
      Code.INVALID_ARGUMENT,
      "INVALID_FIELD",
    );
    expect(error.rawMessage).toBe(
      `graceMs: expected an integer from 0 to ${2 ** 31 - 1}, got ${2 ** 31}`,
    );
    await server.shutdown({ graceMs: 0 });
  });
});
