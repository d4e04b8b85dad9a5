import {
  Server,
  ServerCredentials,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { Code, MAX_TIMER_MS, OpalError, Reason } from "@opal/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGrpcClient } from "./create-grpc-client";
import { DeviceServiceDefinition } from "./gen/services";
import { peerStatusOf } from "./grpc-peer-status";
import { toGrpcStatus } from "./grpc-status";
import { MAX_SENT_TIMEOUT_MS } from "./start-call";

const CHUNK_BYTES = 64 * 1024;

/** What the test server saw. */
const seen = {
  authorization: [] as string[],
  chunksWritten: 0,
  prefillCancelled: false,
  loadModelMessages: 0,
};

const implementation: UntypedServiceImplementation = {
  getInfo(call: ServerUnaryCall<unknown, unknown>, done: sendUnaryData<unknown>) {
    seen.authorization.push(String(call.metadata.get("authorization")[0] ?? ""));
    const delayMs = Number(call.metadata.get("x-delay-ms")[0] ?? 0);
    setTimeout(() => done(null, { deviceId: "dev-1", protocolVersion: "1.0.0" }), delayMs);
  },
  probe(_call: ServerUnaryCall<unknown, unknown>, _done: sendUnaryData<unknown>) {
    // Never answers: the client's deadline ends the call.
  },
  unloadModel(_call: ServerUnaryCall<unknown, unknown>, done: sendUnaryData<unknown>) {
    done(
      toGrpcStatus(
        new OpalError(Code.NOT_FOUND, "model m is not loaded", {
          reason: Reason.MODEL_NOT_LOADED,
          retryDelayMs: 250,
          resource: { resourceType: "opal.device.v1.Model", resourceName: "m" },
        }),
      ),
    );
  },
  releaseKv(_call: ServerUnaryCall<unknown, unknown>, done: sendUnaryData<unknown>) {
    done({ code: status.PERMISSION_DENIED, details: "plain status, no details" });
  },
  async prefill(call: ServerWritableStream<unknown, unknown>) {
    call.on("cancelled", () => {
      seen.prefillCancelled = true;
    });
    const data = new Uint8Array(CHUNK_BYTES);
    while (!call.cancelled && seen.chunksWritten < 10_000) {
      seen.chunksWritten++;
      if (!call.write({ chunk: { layer: 0, offsetBytes: 0, data } })) {
        await new Promise((resolve) => {
          call.once("drain", resolve);
          call.once("cancelled", resolve);
        });
      }
    }
    if (!call.cancelled) call.end();
  },
  watchTelemetry(call: ServerWritableStream<unknown, unknown>) {
    for (let i = 0; i < 3; i++) call.write({ snapshot: { queueDepth: i } });
    call.end();
  },
  loadModel(call: ServerReadableStream<unknown, unknown>, done: sendUnaryData<unknown>) {
    if (String(call.metadata.get("x-hold")[0] ?? "")) {
      // Reads nothing: flow control must hold the client's writer.
      call.pause();
      call.on("cancelled", () => done(null, {}));
      return;
    }
    call.on("data", () => seen.loadModelMessages++);
    call.on("end", () =>
      done(null, { model: { modelId: `m${seen.loadModelMessages}` }, alreadyLoaded: false }),
    );
  },
};

let server: Server;
let address: string;

beforeAll(async () => {
  server = new Server();
  server.addService(DeviceServiceDefinition, implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  address = `127.0.0.1:${port}`;
});

afterAll(() => server.forceShutdown());

const connect = () => createGrpcClient(DeviceServiceDefinition, address, { token: "t-1" });

async function expectOpal(promise: Promise<unknown>, code: Code): Promise<OpalError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(OpalError);
  expect((error as OpalError).code).toBe(code);
  return error as OpalError;
}

describe("createGrpcClient", () => {
  it("makes unary calls with the connection's token, or a call's own metadata", async () => {
    const client = connect();
    try {
      expect((await client.getInfo({})).deviceId).toBe("dev-1");
      await client.getInfo({}, { metadata: { authorization: "Bearer other" } });
      await client.getInfo({}, { metadata: { authorization: "" } });
      expect(seen.authorization.slice(-3)).toEqual(["Bearer t-1", "Bearer other", ""]);
    } finally {
      client.channel.close();
    }
  });

  it("decodes status details into an OpalError and keeps the peer's status as its cause", async () => {
    const client = connect();
    try {
      const rich = await expectOpal(client.unloadModel({ modelId: "m" }), Code.NOT_FOUND);
      expect(rich.reason).toBe(Reason.MODEL_NOT_LOADED);
      expect(rich.retryDelayMs).toBe(250);
      expect(rich.resource?.resourceName).toBe("m");
      expect(peerStatusOf(rich)?.statusDetailsBin?.byteLength).toBeGreaterThan(0);
      const plain = await expectOpal(client.releaseKv({ kvHandle: "h" }), Code.PERMISSION_DENIED);
      expect(plain.rawMessage).toBe("plain status, no details");
      expect(peerStatusOf(plain)).toMatchObject({ code: Code.PERMISSION_DENIED });
      expect(peerStatusOf(plain)?.statusDetailsBin).toBeUndefined();
    } finally {
      client.channel.close();
    }
  });

  it("fails a call past its deadline DEADLINE_EXCEEDED, and a bad timeoutMs INVALID_ARGUMENT", async () => {
    const client = connect();
    try {
      const error = await expectOpal(client.probe({}, { timeoutMs: 50 }), Code.DEADLINE_EXCEEDED);
      expect(peerStatusOf(error)).toBeUndefined();
      await expectOpal(client.probe({}, { timeoutMs: -1 }), Code.INVALID_ARGUMENT);
      expect(client.channel.callsInProgress).toBe(0);
    } finally {
      client.channel.close();
    }
  });

  it("sends a timeout up to 2^31-1 ms without the server overflowing it (the signal keeps longer ones)", async () => {
    const client = connect();
    try {
      const metadata = { "x-delay-ms": "50" };
      for (const timeoutMs of [MAX_SENT_TIMEOUT_MS, MAX_SENT_TIMEOUT_MS + 1, MAX_TIMER_MS]) {
        expect((await client.getInfo({}, { timeoutMs, metadata })).deviceId).toBe("dev-1");
      }
    } finally {
      client.channel.close();
    }
  });

  it("refuses a header grpc-js cannot send INVALID_ARGUMENT, registering no call", async () => {
    const client = connect();
    try {
      for (const metadata of [{ "bad key": "v" }, { "x-data-bin": "text" }] as Record<
        string,
        string
      >[]) {
        const error = await expectOpal(client.getInfo({}, { metadata }), Code.INVALID_ARGUMENT);
        expect(error.reason).toBe(Reason.INVALID_FIELD);
        expect(error.fieldViolations?.[0]?.field).toBe("metadata");
      }
      expect(client.channel.callsInProgress).toBe(0);
    } finally {
      client.channel.close();
    }
  });

  it("reads a server stream to its end", async () => {
    const client = connect();
    try {
      const levels: number[] = [];
      for await (const m of client.watchTelemetry({})) levels.push(m.snapshot?.queueDepth ?? -1);
      expect(levels).toEqual([0, 1, 2]);
    } finally {
      client.channel.close();
    }
  });

  it("holds a server stream that is not read (bounded), and an abort cancels it CANCELLED", async () => {
    const client = connect();
    const abort = new AbortController();
    try {
      seen.chunksWritten = 0;
      seen.prefillCancelled = false;
      const iterator = client.prefill({}, { signal: abort.signal })[Symbol.asyncIterator]();
      expect((await iterator.next()).done).toBe(false);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const written = seen.chunksWritten;
      // The client stopped reading: flow control stopped the server long before its 10,000 chunks.
      expect(written).toBeLessThan(1_000);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(seen.chunksWritten).toBe(written);
      abort.abort();
      await expectOpal(iterator.next(), Code.CANCELLED);
      await expect.poll(() => seen.prefillCancelled).toBe(true);
      expect(client.channel.callsInProgress).toBe(0);
    } finally {
      client.channel.close();
    }
  });

  it("cancels a server stream when the reader stops early", async () => {
    const client = connect();
    try {
      seen.prefillCancelled = false;
      for await (const _ of client.prefill({})) break;
      await expect.poll(() => seen.prefillCancelled).toBe(true);
      expect(client.channel.callsInProgress).toBe(0);
    } finally {
      client.channel.close();
    }
  });

  it("writes a client stream and resolves with the response", async () => {
    const client = connect();
    try {
      seen.loadModelMessages = 0;
      async function* messages() {
        yield { header: { modelId: "m" } };
        for (let i = 0; i < 3; i++) yield { weightsChunk: new Uint8Array(1024) };
      }
      const response = await client.loadModel(messages());
      expect(response.model?.modelId).toBe("m4");
    } finally {
      client.channel.close();
    }
  });

  it("holds a client stream's writer while the server reads nothing; an abort closes its requests", async () => {
    const client = connect();
    const abort = new AbortController();
    let pulled = 0;
    let closed = false;
    async function* weights() {
      try {
        for (let i = 0; i < 10_000; i++) {
          pulled++;
          yield { weightsChunk: new Uint8Array(CHUNK_BYTES) };
        }
      } finally {
        closed = true;
      }
    }
    try {
      const loading = client.loadModel(weights(), {
        signal: abort.signal,
        metadata: { "x-hold": "1" },
      });
      await new Promise((resolve) => setTimeout(resolve, 300));
      const held = pulled;
      expect(held).toBeLessThan(1_000);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(pulled).toBe(held);
      abort.abort();
      await expectOpal(loading, Code.CANCELLED);
      await expect.poll(() => closed).toBe(true);
      expect(client.channel.callsInProgress).toBe(0);
    } finally {
      client.channel.close();
    }
  });

  it("fails a client stream with what its requests throw, as an OpalError", async () => {
    const client = connect();
    try {
      async function* failing() {
        yield { header: { modelId: "m" } };
        throw new OpalError(Code.DATA_LOSS, "weights unreadable");
      }
      await expectOpal(client.loadModel(failing()), Code.DATA_LOSS);
    } finally {
      client.channel.close();
    }
  });

  it("fails a client stream whose requests throw once it is aborted with the abort reason", async () => {
    const client = connect();
    const abort = new AbortController();
    const reason = new OpalError(Code.UNAVAILABLE, "shutting down", { reason: Reason.CANCELLED });
    try {
      async function* stopping() {
        yield { header: { modelId: "m" } };
        abort.abort(reason);
        throw new Error("the producer stopped");
      }
      const loading = client.loadModel(stopping(), { signal: abort.signal });
      expect(await expectOpal(loading, Code.UNAVAILABLE)).toBe(reason);
    } finally {
      client.channel.close();
    }
  });

  it("closes a requests iterator blocked on its producer once the call ends", async () => {
    const client = connect();
    const abort = new AbortController();
    let closed = false;
    const blocked: AsyncIterableIterator<{ header: { modelId: string } }> = {
      next: () => new Promise(() => {}),
      return: async () => {
        closed = true;
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]: () => blocked,
    };
    try {
      const loading = client.loadModel(blocked, { signal: abort.signal });
      await new Promise((resolve) => setTimeout(resolve, 50));
      abort.abort();
      await expectOpal(loading, Code.CANCELLED);
      await expect.poll(() => closed).toBe(true);
    } finally {
      client.channel.close();
    }
  });

  it("close() ends every call in progress with its reason, and later calls at once", async () => {
    const client = connect();
    const held = client.probe({});
    const stream = client.prefill({})[Symbol.asyncIterator]();
    await stream.next();
    expect(client.channel.callsInProgress).toBe(2);
    const closed = new OpalError(Code.CANCELLED, "closed by the test", {
      reason: Reason.CANCELLED,
    });
    client.channel.close(closed);
    expect(await expectOpal(held, Code.CANCELLED)).toBe(closed);
    expect(await expectOpal(stream.next(), Code.CANCELLED)).toBe(closed);
    expect(await expectOpal(client.getInfo({}), Code.CANCELLED)).toBe(closed);
    expect(client.channel.callsInProgress).toBe(0);
  });

  it("refuses an address grpc-js cannot parse INVALID_ARGUMENT", () => {
    expect(() => createGrpcClient(DeviceServiceDefinition, "")).toThrow(OpalError);
  });
});
