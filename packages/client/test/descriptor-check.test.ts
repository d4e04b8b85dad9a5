import { Code, Reason } from "@opal/core";
import type { PrefillDriver, PrefillRequest } from "@opal/driver";
import { computeOpalBlockHashes, type KvDescriptor } from "@opal/kv";
import { createMockDevice } from "@opal/mock";
import { createDeviceServer, type DeviceServer } from "@opal/server";
import { expectOpalError } from "@opal/testing";
import { afterEach, describe, expect, it } from "vitest";
import { createDeviceClient } from "../src/device-client/create-device-client";
import { createKvReceiver } from "../src/kv-receiver/create-kv-receiver";
import { createDevicePool } from "../src/pool/create-device-pool";
import { pushPrefill } from "../src/prefill/push-prefill";
import { startPrefill } from "../src/prefill/start-prefill";
import type { KvSink } from "../src/sinks/kv-sink";
import { createMemorySink } from "../src/sinks/memory-sink";
import { F32_NHD, tinyRequest } from "./reliability/fixtures";

// PF-12: the descriptor of `accepted` must match the request. A device that answers another
// dtype, layout or head range than asked must fail the run before any sink is opened.

const servers: DeviceServer[] = [];
const clients: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.shutdown({ graceMs: 0 })));
});

/** What a lying device did: prefill calls it took, chunks it got to send. */
interface Liar {
  prefills: number;
  chunksSent: number;
}

/** Serves on 127.0.0.1:0 a mock whose `accepted` descriptor `lie` rewrites (identity = honest). */
async function serveLiar(lie: (d: KvDescriptor) => KvDescriptor) {
  const mock = createMockDevice({ models: ["opal-tiny"] });
  const liar: Liar = { prefills: 0, chunksSent: 0 };
  const driver: PrefillDriver = {
    ...mock,
    async *prefill(request, call) {
      liar.prefills++;
      for await (const event of mock.prefill(request, call)) {
        if (event.type === "accepted") yield { ...event, descriptor: lie(event.descriptor) };
        else {
          if (event.type === "chunk") liar.chunksSent++;
          yield event;
        }
      }
    },
  };
  const server = await createDeviceServer(driver, { port: 0 });
  servers.push(server);
  return { address: server.address, liar };
}

/** A sink factory recording every call the SDK makes. */
function recordingSink() {
  const calls: string[] = [];
  const create = (): KvSink<string> => ({
    open: () => void calls.push("open"),
    writeLayer: (layer) => void calls.push(`layer ${layer.layer}`),
    commit: () => {
      calls.push("commit");
      return "committed";
    },
    abort: () => void calls.push("abort"),
  });
  return { create, calls };
}

const BF16 = { ...F32_NHD, dtype: "bf16" } as const;

/** Hashes of the first 2 of tinyRequest()'s 3 full 16-token blocks, then one the prompt lacks. */
function heldBlocks(): Uint8Array[] {
  const prompt = tinyRequest().promptTokenIds;
  const [h0, h1] = computeOpalBlockHashes(prompt, { blockSizeTokens: 16 });
  return [h0!, h1!, new Uint8Array(32).fill(7)];
}

const lies: {
  name: string;
  request: Partial<PrefillRequest>;
  lie: (d: KvDescriptor) => KvDescriptor;
  field: string;
  expected: string;
  actual: string;
}[] = [
  {
    name: "fp8 for a bf16 request",
    request: { kvFormat: BF16 },
    lie: (d) => ({ ...d, dtype: "fp8_e4m3fn" }),
    field: "descriptor.dtype",
    expected: "bf16",
    actual: "fp8_e4m3fn",
  },
  {
    name: "HND for an NHD request",
    request: {},
    lie: (d) => ({ ...d, layout: "hnd" }),
    field: "descriptor.layout",
    expected: "nhd",
    actual: "hnd",
  },
  {
    name: "another head than the one asked for",
    request: { kvFormat: { ...F32_NHD, headRange: { start: 0, count: 1 } } },
    lie: (d) => ({ ...d, headRange: { start: 1, count: 1 } }),
    field: "descriptor.headRange",
    expected: "{start 0, count 1}",
    actual: "{start 1, count 1}",
  },
  {
    name: "a token range that skips tokens nobody said the decoder holds",
    request: {},
    lie: (d) => ({ ...d, tokenStart: 16, tokenCount: d.tokenCount - 16 }),
    field: "descriptor.tokenStart",
    expected: "0 (no decoderPrefix)",
    actual: "16",
  },
];

describe("the client checks `accepted`'s descriptor against the request (PF-12)", () => {
  for (const c of lies) {
    it(`a device answering ${c.name} fails FAILED_PRECONDITION DESCRIPTOR_MISMATCH, no sink opened`, async () => {
      const { address, liar } = await serveLiar(c.lie);
      const client = createDeviceClient(address);
      clients.push(client);
      const sink = recordingSink();
      const run = startPrefill(client, tinyRequest(c.request), {
        sink: sink.create,
        retry: { maxAttempts: 4, initialBackoffMs: 0, maxBackoffMs: 0 },
      });
      const error = await expectOpalError(
        run.result,
        Code.FAILED_PRECONDITION,
        Reason.DESCRIPTOR_MISMATCH,
      );
      expect(error.message).toContain(c.field);
      expect(error.message).toContain(c.expected);
      expect(error.message).toContain(c.actual);
      expect(error.metadata).toMatchObject({
        field: c.field,
        expected: c.expected,
        actual: c.actual,
      });
      // Nothing reached a sink, and a device that broke the protocol is not asked again.
      expect(sink.calls).toEqual([]);
      expect(liar.prefills).toBe(1);
    });
  }

  it("an honest device passes the same checks (with and without a decoder prefix)", async () => {
    const { address } = await serveLiar((d) => d);
    const client = createDeviceClient(address);
    clients.push(client);
    const cases: [PrefillRequest, number][] = [
      [tinyRequest({ kvFormat: BF16 }), 0],
      [tinyRequest({ kvFormat: { ...F32_NHD, headRange: { start: 1, count: 1 } } }), 0],
      [tinyRequest({ decoderPrefix: { numTokens: 20 } }), 20],
      // The decoder holds 2 of the 3 blocks it names: 32 tokens skipped (PH-9).
      [tinyRequest({ decoderPrefix: { blockHashes: heldBlocks() } }), 32],
    ];
    for (const [request, tokenStart] of cases) {
      const outcome = await startPrefill(client, request).result;
      expect(outcome.descriptor.tokenStart).toBe(tokenStart);
    }
  });

  it("a device that skips fewer blocks than the decoder's hashes match fails naming tokenStart", async () => {
    const { address } = await serveLiar((d) => ({
      ...d,
      tokenStart: 16,
      tokenCount: d.tokenStart + d.tokenCount - 16,
    }));
    const client = createDeviceClient(address);
    clients.push(client);
    const error = await expectOpalError(
      startPrefill(client, tinyRequest({ decoderPrefix: { blockHashes: heldBlocks() } })).result,
      Code.FAILED_PRECONDITION,
      Reason.DESCRIPTOR_MISMATCH,
    );
    expect(error.metadata).toMatchObject({ field: "descriptor.tokenStart", actual: "16" });
    expect(error.metadata?.expected).toMatch(/^32 /);
  });

  it("a push whose accepted descriptor contradicts the request fails the same way, not retried", async () => {
    const { address, liar } = await serveLiar((d) => ({ ...d, layout: "hnd" }));
    const client = createDeviceClient(address);
    clients.push(client);
    const receiver = await createKvReceiver({
      tokens: ["receiver-secret"],
      createSink: createMemorySink,
    });
    clients.push(receiver);
    const request = tinyRequest({
      pushTarget: {
        address: receiver.address,
        transferId: "lying-push",
        authorizationToken: "receiver-secret",
      },
    });
    const error = await expectOpalError(
      pushPrefill(client, request, { retry: { maxAttempts: 3, initialBackoffMs: 0 } }),
      Code.FAILED_PRECONDITION,
      Reason.DESCRIPTOR_MISMATCH,
    );
    expect(error.metadata).toMatchObject({ field: "descriptor.layout", actual: "hnd" });
    expect(liar.prefills).toBe(1);
  });

  it("in a pool, the lying device counts as failed, its circuit opens, and the retry goes elsewhere", async () => {
    const bad = await serveLiar((d) => ({ ...d, dtype: "fp8_e4m3fn" }));
    const good = await serveLiar((d) => d);
    const pool = await createDevicePool([bad.address, good.address], {
      routing: "round-robin",
      failureThreshold: 1,
      health: false,
    });
    clients.push(pool);
    const sink = recordingSink();
    const outcome = await startPrefill(pool, tinyRequest({ kvFormat: BF16 }), {
      sink: sink.create,
      retry: { maxAttempts: 2, initialBackoffMs: 0, maxBackoffMs: 0 },
    }).result;
    expect(outcome.servedBy).toBe(good.address);
    expect(outcome.transfer.attempts).toBe(2);
    expect(outcome.descriptor.dtype).toBe("bf16");
    // Only the honest device's sink was opened: the liar's attempt never reached one.
    expect(sink.calls[0]).toBe("open");
    expect(sink.calls.filter((c) => c === "open")).toEqual(["open"]);
    expect(sink.calls.at(-1)).toBe("commit");
    expect(bad.liar.prefills).toBe(1);
    const liarState = pool.devices.find((d) => d.target === bad.address)!;
    expect(liarState.failures).toBe(1);
    expect(liarState.circuit).toBe("open");
  });
});
