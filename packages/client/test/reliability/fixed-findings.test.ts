import { Code } from "@opal/core";
import type { PrefillDriver, PrefillEvent, PrefillRequest } from "@opal/driver";
import { createMockDevice, serveMockDevice } from "@opal/mock";
import { fromWireDescriptor, toWireDescriptor } from "@opal/protocol";
import { expectOpalError } from "@opal/testing";
import { describe, expect, it } from "vitest";
import { createDeviceClient } from "../../src/device-client/create-device-client";
import { startPrefill } from "../../src/prefill/start-prefill";

// Regression tests for findings of the reliability review (each names its requirement).
let n = 0;
const request = (patch: Partial<PrefillRequest> = {}): PrefillRequest => ({
  requestId: `finding-${++n}`,
  modelId: "opal-tiny",
  promptTokenIds: Uint32Array.from({ length: 20 }, (_, i) => i + 1),
  kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  maxChunkBytes: 256,
  ...patch,
});

describe("fixed findings", () => {
  it("RT-9: another tenant's expired handle is NOT_FOUND, like one that never existed", async () => {
    let clock = 1_000_000;
    const device = createMockDevice({ models: ["opal-tiny"], now: () => clock });
    let handle = "";
    for await (const e of device.prefill(request({ retentionSeconds: 5 }), { tenant: "a" })) {
      if (e.type === "accepted") handle = e.kvHandle;
    }
    clock += 10_000;
    const drain = async (tenant: string) => {
      for await (const _ of device.fetchKv({ kvHandle: handle }, { tenant })) {
        // consume
      }
    };
    await expectOpalError(drain("a"), Code.NOT_FOUND, "KV_HANDLE_EXPIRED");
    const foreign = await expectOpalError(drain("b"), Code.NOT_FOUND, "KV_HANDLE_NOT_FOUND");
    expect(foreign.resource?.resourceName).toBe("");
  });

  it("PS-6: a chunk out of order is a broken stream (DATA_LOSS STREAM_INCOMPLETE), which resumes", async () => {
    const mock = createMockDevice({ models: ["opal-tiny"] });
    let first = true;
    const swapping: PrefillDriver = {
      ...mock,
      async *prefill(req, options) {
        const events: PrefillEvent[] = [];
        for await (const e of mock.prefill(req, options)) events.push(e);
        if (first) {
          first = false;
          [events[2], events[3]] = [events[3]!, events[2]!];
        }
        yield* events;
      },
    };
    await expectOpalError(
      startPrefill(swapping, request(), { retry: { maxAttempts: 1 } }).result,
      Code.DATA_LOSS,
      "STREAM_INCOMPLETE",
    );
    first = true;
    const outcome = await startPrefill(swapping, request({ retentionSeconds: 30 })).result;
    expect(outcome.transfer.resumes).toBe(1);
  });

  it("ERR-3: a descriptor whose total_bytes disagrees with its shape is INVALID_FIELD", async () => {
    const device = createMockDevice({ models: ["opal-tiny"] });
    let descriptor: ReturnType<typeof toWireDescriptor> | undefined;
    for await (const e of device.prefill(request()))
      if (e.type === "accepted") descriptor = toWireDescriptor(e.descriptor);
    expect(() => fromWireDescriptor({ ...descriptor!, totalBytes: 7 })).toThrow(
      /total_bytes: expected \d+ \(from the shape\), got 7/,
    );
    try {
      fromWireDescriptor({ ...descriptor!, totalBytes: 7 });
    } catch (error) {
      expect((error as { reason: string }).reason).toBe("INVALID_FIELD");
    }
  });

  it("PH-2: a cache_salt over 256 bytes of UTF-8 is INVALID_FIELD, over the wire", async () => {
    const mock = await serveMockDevice({ models: ["opal-tiny"] });
    const client = createDeviceClient(mock.address);
    try {
      const error = await expectOpalError(
        startPrefill(client, request({ cacheSalt: "é".repeat(129) })).result,
        Code.INVALID_ARGUMENT,
        "INVALID_FIELD",
      );
      expect(error.fieldViolations[0]?.field).toBe("cache_salt");
      const long = await expectOpalError(
        (async () => {
          for await (const _ of client.fetchKv({ kvHandle: "h".repeat(129) })) {
            // consume
          }
        })(),
        Code.INVALID_ARGUMENT,
        "INVALID_FIELD",
      );
      expect(long.message).toMatch(/kv_handle: expected at most 128 characters, got 129/);
    } finally {
      await client.close();
      await mock.close({ graceMs: 100 });
    }
  });
});
