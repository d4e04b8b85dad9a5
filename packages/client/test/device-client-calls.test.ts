import type * as Grpc from "@grpc/grpc-js";
import { Code, type OpalError, Reason } from "@opal/core";
import type { DriverCallOptions, PrefillDriver, PrefillRequest } from "@opal/driver";
import { createMockDevice, type MockDevice } from "@opal/mock";
import { createDeviceServer, type DeviceServer } from "@opal/server";
import { expectOpalError } from "@opal/testing";
import pino from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { DeviceClientOptions } from "../src/device-client/client-options";
import {
  createDeviceClient,
  DEFAULT_CHANNEL,
  type DeviceClient,
} from "../src/device-client/create-device-client";

// createDeviceClient builds its grpc-js channel options inline and exposes no function returning
// them, so the grpc-js Client it constructs is recorded (a subclass that behaves as grpc-js's own).
const constructed = vi.hoisted(
  () => [] as Array<{ readonly target: string; readonly options: Record<string, unknown> }>,
);
vi.mock("@grpc/grpc-js", async (importOriginal) => {
  const actual = await importOriginal<typeof Grpc>();
  class RecordingClient extends actual.Client {
    constructor(
      target: string,
      credentials: Grpc.ChannelCredentials,
      options: Grpc.ClientOptions = {},
    ) {
      super(target, credentials, options);
      constructed.push({ target, options: { ...options } });
    }
  }
  return { ...actual, Client: RecordingClient };
});

const UNARY = ["getInfo", "getCapabilities", "probe", "listModels", "releaseKv"] as const;
type Unary = (typeof UNARY)[number];
const callUnary = (client: DeviceClient, rpc: Unary, call: DriverCallOptions) =>
  rpc === "releaseKv" ? client.releaseKv("no-such-handle", call) : client[rpc](call);

/** The device side of every call: what the served driver was called with. */
interface SeenCall {
  readonly rpc: string;
  readonly signal: AbortSignal | undefined;
}

/** Why the device's signal for `call` aborted. */
const abortReason = (call: SeenCall) => call.signal?.reason as OpalError | undefined;

/** `mock` with every unary call and prefill recorded, as the server hands them to the driver. */
function observed(mock: MockDevice, seen: SeenCall[]): PrefillDriver {
  const record = (rpc: string, call: DriverCallOptions | undefined) => {
    seen.push({ rpc, signal: call?.signal });
    return call;
  };
  return {
    ...mock,
    getInfo: (call) => mock.getInfo(record("getInfo", call)),
    getCapabilities: (call) => mock.getCapabilities(record("getCapabilities", call)),
    probe: (call) => mock.probe(record("probe", call)),
    listModels: (call) => mock.listModels(record("listModels", call)),
    releaseKv: (handle, call) => mock.releaseKv(handle, record("releaseKv", call)),
    prefill: (request, call) => mock.prefill(request, record("prefill", call)),
  };
}

let mock: MockDevice;
let server: DeviceServer;
const seen: SeenCall[] = [];
const clients: DeviceClient[] = [];
const connect = (options?: DeviceClientOptions) => {
  const client = createDeviceClient(server.address, options);
  clients.push(client);
  return client;
};

beforeAll(async () => {
  mock = createMockDevice({ models: ["llama-3-8b"] });
  server = await createDeviceServer(observed(mock, seen), {
    port: 0,
    logger: pino({ level: "silent" }),
  });
});
afterAll(async () => {
  for (const client of clients) await client.close();
  await server?.shutdown({ graceMs: 0 });
  await mock?.close();
});
beforeEach(() => {
  mock.setFaults({});
  seen.length = 0;
});

/** Settles `promise`, returning its error and how long it took. */
/** Times `call` from before it starts (its deadline is set when it is made) until it settles. */
async function timed(call: () => Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = performance.now();
  const error = await call().then(
    () => undefined,
    (e: unknown) => e,
  );
  return { error, ms: performance.now() - started };
}

/** Waits until `check` holds (polling), or fails after `ms`. */
async function eventually(check: () => boolean, ms = 2000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("unary calls honour timeoutMs", () => {
  it.each(UNARY)(
    "%s with timeoutMs 50 against a 300 ms device fails DEADLINE_EXCEEDED in < 250 ms",
    async (rpc) => {
      const client = connect();
      await client.probe(); // connected, so the timing measures the call only
      mock.setFaults({ latencyMs: 300 });
      const { error, ms } = await timed(() => callUnary(client, rpc, { timeoutMs: 50 }));
      expect((error as OpalError | undefined)?.code).toBe(Code.DEADLINE_EXCEEDED);
      expect(ms).toBeLessThan(250);
      expect(ms).toBeGreaterThanOrEqual(45);
      // The device's work is aborted too: by the propagated deadline or by the client's cancel when
      // its own timer fires first (both fire at 50 ms; which one the device sees is a race).
      const device = seen.at(-1)!;
      expect(device.rpc).toBe(rpc);
      await eventually(() => device.signal?.aborted === true);
      expect([Code.DEADLINE_EXCEEDED, Code.CANCELLED]).toContain(abortReason(device)?.code);
    },
  );

  it("the same calls succeed when the deadline leaves room for the latency", async () => {
    const client = connect();
    mock.setFaults({ latencyMs: 300 });
    const started = performance.now();
    const results = await Promise.all(
      UNARY.map((rpc) => callUnary(client, rpc, { timeoutMs: 5000 })),
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(results[4]).toEqual({ released: false });
  });

  it("defaultUnaryTimeoutMs applies to calls that pass no timeoutMs", async () => {
    const client = connect({ defaultUnaryTimeoutMs: 50 });
    await client.probe();
    mock.setFaults({ latencyMs: 300 });
    const { error, ms } = await timed(() => client.getInfo());
    expect((error as OpalError | undefined)?.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(ms).toBeLessThan(250);
  });
});

describe("unary calls honour signal", () => {
  it.each(UNARY)(
    "%s with an already-aborted signal fails CANCELLED and never reaches the device",
    async (rpc) => {
      const client = connect();
      await client.getInfo(); // the protocol version read (VER-2) before the first other call
      await client.probe();
      seen.length = 0;
      const controller = new AbortController();
      controller.abort();
      const error = await expectOpalError(
        callUnary(client, rpc, { signal: controller.signal }),
        Code.CANCELLED,
      );
      expect(error.rawMessage).toBe("This operation was aborted");
      // A later call on the same client arrives alone: the aborted one was never sent.
      await client.probe();
      expect(seen.map((s) => s.rpc)).toEqual(["probe"]);
    },
  );

  it.each(UNARY)(
    "%s aborted mid-call fails CANCELLED at once and the device sees the call cancelled",
    async (rpc) => {
      const client = connect();
      await client.probe();
      seen.length = 0;
      mock.setFaults({ latencyMs: 300 });
      const controller = new AbortController();
      const pending = timed(() => callUnary(client, rpc, { signal: controller.signal }));
      await eventually(() => seen.length === 1);
      controller.abort();
      const { error, ms } = await pending;
      expect((error as OpalError | undefined)?.code).toBe(Code.CANCELLED);
      expect(ms).toBeLessThan(250);
      const device = seen[0]!;
      expect(device.rpc).toBe(rpc);
      await eventually(() => device.signal?.aborted === true);
      expect(abortReason(device)?.code).toBe(Code.CANCELLED);
      expect(abortReason(device)?.reason).toBe(Reason.CANCELLED);
    },
  );
});

describe("channel settings", () => {
  let n = 0;
  // llama-3-8b, 64 tokens, bf16: every layer part is 64 · 8 · 128 · 2 = 128 KiB.
  const request = (maxChunkBytes: number): PrefillRequest => ({
    requestId: `channel-${++n}`,
    modelId: "llama-3-8b",
    promptTokenIds: Uint32Array.from({ length: 64 }, (_, i) => i + 1),
    kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
    maxChunkBytes,
  });
  const drainPrefill = async (client: DeviceClient, req: PrefillRequest) => {
    let chunks = 0;
    for await (const event of client.prefill(req)) if (event.type === "chunk") chunks++;
    return chunks;
  };

  it("a chunk larger than maxMessageBytes fails RESOURCE_EXHAUSTED naming the limit", async () => {
    const client = connect({ channel: { maxMessageBytes: 64 * 1024 } });
    const error = await expectOpalError(
      drainPrefill(client, request(128 * 1024)),
      Code.RESOURCE_EXHAUSTED,
    );
    expect(error.rawMessage).toMatch(/^Received message larger than max \(\d+ vs 65536\)$/);
    expect(Number(/\((\d+) vs/.exec(error.rawMessage)![1])).toBeGreaterThan(128 * 1024);
  });

  it("the same chunks arrive under a larger maxMessageBytes", async () => {
    const client = connect({ channel: { maxMessageBytes: 256 * 1024 } });
    // 32 layers × 2 parts, one 128 KiB chunk each.
    expect(await drainPrefill(client, request(128 * 1024))).toBe(64);
  });

  it("passes the flow-control window, message limits and keepalive to grpc-js", () => {
    constructed.length = 0;
    connect();
    connect({
      channel: {
        flowControlWindowBytes: 1 << 20,
        maxMessageBytes: 8 << 20,
        keepaliveTimeMs: 45_000,
        keepaliveTimeoutMs: 5_000,
      },
      tls: { serverNameOverride: "device.test" },
    });
    expect(constructed).toEqual([
      {
        target: server.address,
        options: {
          "grpc.max_receive_message_length": DEFAULT_CHANNEL.maxMessageBytes,
          "grpc.max_send_message_length": DEFAULT_CHANNEL.maxMessageBytes,
          "grpc-node.flow_control_window": DEFAULT_CHANNEL.flowControlWindowBytes,
          "grpc.keepalive_time_ms": DEFAULT_CHANNEL.keepaliveTimeMs,
          "grpc.keepalive_timeout_ms": DEFAULT_CHANNEL.keepaliveTimeoutMs,
        },
      },
      {
        target: server.address,
        options: {
          "grpc.max_receive_message_length": 8 << 20,
          "grpc.max_send_message_length": 8 << 20,
          "grpc-node.flow_control_window": 1 << 20,
          "grpc.keepalive_time_ms": 45_000,
          "grpc.keepalive_timeout_ms": 5_000,
          "grpc.ssl_target_name_override": "device.test",
        },
      },
    ]);
    expect(DEFAULT_CHANNEL).toEqual({
      flowControlWindowBytes: 16 * 1024 * 1024,
      maxMessageBytes: 64 * 1024 * 1024,
      keepaliveTimeMs: 30_000,
      keepaliveTimeoutMs: 10_000,
    });
  });
});

describe("errors carry the device's RetryInfo over gRPC", () => {
  it.each([
    ["UNAVAILABLE", Code.UNAVAILABLE, 10],
    ["RESOURCE_EXHAUSTED", Code.RESOURCE_EXHAUSTED, 10],
    ["INTERNAL", Code.INTERNAL, undefined],
  ] as const)(
    "an injected %s (code %i) carries retryDelayMs %s",
    async (name, code, retryDelayMs) => {
      const client = connect();
      await client.probe(); // the protocol version read (VER-2) before the faults
      mock.setFaults({
        errors: {
          GetInfo: { rate: 1, code: name, reason: "DEVICE_BUSY" },
          Prefill: { rate: 1, code: name },
        },
      });
      const unary = await expectOpalError(client.getInfo(), code, "DEVICE_BUSY");
      expect(unary.retryDelayMs).toBe(retryDelayMs);
      expect(unary.rawMessage).toBe("injected fault: GetInfo failed");
      const stream = await expectOpalError(
        (async () => {
          for await (const _ of client.prefill(request(4096)));
        })(),
        code,
        Reason.DEVICE_FAULT,
      );
      expect(stream.retryDelayMs).toBe(retryDelayMs);
      expect(stream.rawMessage).toBe("injected fault: Prefill failed");
    },
  );

  let n = 0;
  function request(maxChunkBytes: number): PrefillRequest {
    return {
      requestId: `retry-info-${++n}`,
      modelId: "llama-3-8b",
      promptTokenIds: Uint32Array.from({ length: 16 }, (_, i) => i + 1),
      kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
      maxChunkBytes,
    };
  }
});
