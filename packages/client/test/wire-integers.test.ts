import { Code, Reason } from "@opal/core";
import type { PrefillRequest } from "@opal/driver";
import { createMockDevice, type MockDevice } from "@opal/mock";
import { createDeviceServer, type DeviceServer } from "@opal/server";
import { collectPrefill, expectOpalError } from "@opal/testing";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDeviceClient, type DeviceClient } from "../src/index";
import { tinyRequest } from "./reliability/fixtures";

let mock: MockDevice;
let server: DeviceServer;
let client: DeviceClient;
/** The priority of each prefill that reached the device. */
const reached: (number | undefined)[] = [];

beforeAll(async () => {
  mock = createMockDevice({ models: ["opal-tiny"] });
  const counted = {
    ...mock,
    prefill: (...args: Parameters<MockDevice["prefill"]>) => {
      reached.push(args[0].priority);
      return mock.prefill(...args);
    },
  };
  server = await createDeviceServer(counted, { port: 0, logger: pino({ level: "silent" }) });
  client = createDeviceClient(server.address);
});
afterAll(async () => {
  await client?.close();
  await server?.shutdown({ graceMs: 0 });
  await mock?.close();
});

const seeded = (patch: { seed?: number; topK?: number }): Partial<PrefillRequest> => ({
  sampling: { mode: "seeded", temperature: 1, seed: 7, ...patch },
});

describe("the client refuses integers protobufjs would wrap, before sending", () => {
  // Each of these would arrive as another, valid value (2^31 as -2^31, 1.5 as 1, -1 as 2^32 - 1...).
  it.each([
    ["priority", { priority: 2 ** 31 }, "int32", "2147483648"],
    ["priority", { priority: -(2 ** 31) - 1 }, "int32", "-2147483649"],
    ["priority", { priority: 1.5 }, "int32", "1.5"],
    ["priority", { priority: Number.NaN }, "int32", "NaN"],
    ["retention_seconds", { retentionSeconds: -1 }, "uint32", "-1"],
    ["retention_seconds", { retentionSeconds: 2 ** 32 }, "uint32", "4294967296"],
    ["max_chunk_bytes", { maxChunkBytes: 2 ** 32 + 1024 }, "uint32", "4294968320"],
    ["max_chunk_bytes", { maxChunkBytes: 1024.5 }, "uint32", "1024.5"],
    [
      "decoder_prefix.num_tokens",
      { decoderPrefix: { numTokens: 2 ** 32 + 4 } },
      "uint32",
      "4294967300",
    ],
    ["sampling.top_k", seeded({ topK: -1 }), "uint32", "-1"],
    ["sampling.seed", seeded({ seed: -1 }), "uint64", "-1"],
    ["sampling.seed", seeded({ seed: 2 ** 53 }), "uint64", "9007199254740992"],
  ] as const)("%s %j", async (field, patch, type, got) => {
    const before = reached.length;
    const error = await expectOpalError(
      collectPrefill(client.prefill(tinyRequest(patch as Partial<PrefillRequest>))),
      Code.INVALID_ARGUMENT,
      Reason.INVALID_FIELD,
    );
    expect(error.fieldViolations).toHaveLength(1);
    expect(error.fieldViolations[0]?.field).toBe(field);
    expect(error.fieldViolations[0]?.description).toMatch(
      new RegExp(`^expected a whole number in -?\\d+\\.\\.\\d+ \\(${type}\\), got ${got}$`),
    );
    expect(reached).toHaveLength(before);
  });

  it("sends the int32 extremes of priority as they are", async () => {
    reached.length = 0;
    for (const priority of [-(2 ** 31), 2 ** 31 - 1]) {
      await collectPrefill(client.prefill(tinyRequest({ priority })));
    }
    expect(reached).toEqual([-(2 ** 31), 2 ** 31 - 1]);
  });
});
