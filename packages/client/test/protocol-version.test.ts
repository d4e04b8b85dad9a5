import { Code, type OpalError } from "@opal/core";
import type { DriverCallOptions, PrefillDriver } from "@opal/driver";
import { createMockDevice, type MockDevice } from "@opal/mock";
import { PROTOCOL_VERSION } from "@opal/protocol";
import { createDeviceServer, type DeviceServer } from "@opal/server";
import { expectOpalError } from "@opal/testing";
import pino from "pino";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { createDeviceClient, type DeviceClient } from "../src/device-client/create-device-client";

/** A served mock reporting `version`, counting what the device is asked. */
async function serve(version: string) {
  const mock = createMockDevice({ models: ["opal-tiny"] });
  const calls: string[] = [];
  const driver: PrefillDriver = {
    ...mock,
    getInfo: async (call?: DriverCallOptions) => {
      calls.push("getInfo");
      return { ...(await mock.getInfo(call)), protocolVersion: version };
    },
    probe: (call) => {
      calls.push("probe");
      return mock.probe(call);
    },
  };
  const server = await createDeviceServer(driver, { port: 0, logger: pino({ level: "silent" }) });
  return { mock, server, calls };
}

let other: { mock: MockDevice; server: DeviceServer; calls: string[] };
let same: { mock: MockDevice; server: DeviceServer; calls: string[] };
const clients: DeviceClient[] = [];
const connect = (address: string) => {
  const client = createDeviceClient(address);
  clients.push(client);
  return client;
};

beforeAll(async () => {
  other = await serve("2.0.0");
  same = await serve("1.7.3");
});
afterEach(async () => {
  for (const client of clients.splice(0)) await client.close();
  other.calls.length = 0;
  same.calls.length = 0;
  same.mock.setFaults({});
});
afterAll(async () => {
  for (const { server, mock } of [other, same]) {
    await server.shutdown({ graceMs: 0 });
    await mock.close();
  }
});

it("VER-2 refuses a device of another major with FAILED_PRECONDITION naming both versions, reading GetInfo once", async () => {
  const client = connect(other.server.address);
  const first = await expectOpalError(
    client.probe(),
    Code.FAILED_PRECONDITION,
    "PROTOCOL_VERSION_UNSUPPORTED",
  );
  expect(first.rawMessage).toContain("2.0.0");
  expect(first.rawMessage).toContain(PROTOCOL_VERSION);
  await expectOpalError(
    client.listModels(),
    Code.FAILED_PRECONDITION,
    "PROTOCOL_VERSION_UNSUPPORTED",
  );
  const prefill = (async () => {
    for await (const _ of client.prefill({
      requestId: "ver-2",
      modelId: "opal-tiny",
      promptTokenIds: Uint32Array.of(1, 2, 3),
      kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
    }));
  })();
  await expectOpalError(prefill, Code.FAILED_PRECONDITION, "PROTOCOL_VERSION_UNSUPPORTED");
  // The device is not called further, and its version is read once.
  expect(other.calls).toEqual(["getInfo"]);
  expect(other.mock.stats.prefillsStarted).toBe(0);
  // getInfo itself still answers, so a caller can see what the device speaks.
  expect((await client.getInfo()).protocolVersion).toBe("2.0.0");
});

it("accepts another minor of its major; concurrent first calls share one GetInfo", async () => {
  const client = connect(same.server.address);
  await Promise.all([client.probe(), client.probe(), client.listModels()]);
  await client.probe();
  expect(same.calls.filter((c) => c === "getInfo")).toHaveLength(1);
  expect(same.calls.filter((c) => c === "probe")).toHaveLength(3);
});

it("a failed GetInfo fails the call and is read again on the next one", async () => {
  const client = connect(same.server.address);
  same.mock.setFaults({ errors: { GetInfo: { rate: 1, code: "UNAVAILABLE" } } });
  const error: OpalError = await expectOpalError(client.probe(), Code.UNAVAILABLE);
  expect(error.rawMessage).toBe("injected fault: GetInfo failed");
  expect(same.calls).toEqual(["getInfo"]);
  same.mock.setFaults({});
  expect(await client.probe()).toBeDefined();
  expect(same.calls).toEqual(["getInfo", "getInfo", "probe"]);
});

it("a call whose signal has already aborted reads no GetInfo", async () => {
  const client = connect(same.server.address);
  const controller = new AbortController();
  controller.abort();
  await expectOpalError(client.probe({ signal: controller.signal }), Code.CANCELLED);
  expect(same.calls).toEqual([]);
});

it("a getInfo() made first serves as the version read: the next calls read no other", async () => {
  const mixed = connect(same.server.address);
  expect((await mixed.getInfo()).protocolVersion).toBe("1.7.3");
  await mixed.probe();
  expect(same.calls).toEqual(["getInfo", "probe"]);
  const refused = connect(other.server.address);
  await refused.getInfo();
  await expectOpalError(refused.probe(), Code.FAILED_PRECONDITION, "PROTOCOL_VERSION_UNSUPPORTED");
  expect(other.calls).toEqual(["getInfo"]);
});

it("a call's timeoutMs bounds its wait for the version read", async () => {
  const client = connect(same.server.address);
  same.mock.setFaults({ latencyMs: 300 });
  const started = performance.now();
  await expectOpalError(client.probe({ timeoutMs: 100 }), Code.DEADLINE_EXCEEDED);
  expect(performance.now() - started).toBeLessThan(250);
  expect(same.calls).toEqual(["getInfo"]);
});
