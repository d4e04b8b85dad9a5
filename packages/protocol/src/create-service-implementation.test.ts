import { Client, credentials, type ServiceError } from "@grpc/grpc-js";
import { Code, MAX_TIMER_MS, OpalError, Reason } from "@opal/core";
import { afterEach, describe, expect, it } from "vitest";
import { createServiceImplementation } from "./create-service-implementation";
import { DeviceServiceDefinition as D } from "./gen/services";
import { fromGrpcStatus } from "./grpc-status";
import { type GrpcListener, listenGrpc } from "./listen-grpc";
import type { ServiceContext } from "./service-context";
import type { ServiceHandlers } from "./service-handlers";
import type { ServiceInterceptor } from "./service-interceptor";

/** A service of one method of each kind. */
const TEST_SERVICE = {
  unloadModel: D.unloadModel,
  watchTelemetry: D.watchTelemetry,
  loadModel: D.loadModel,
};

interface TestContext extends ServiceContext {
  tenant: string;
}

let listener: GrpcListener | undefined;
let client: Client | undefined;

afterEach(async () => {
  client?.close();
  listener?.forceShutdown();
});

async function serve(
  handlers: Partial<ServiceHandlers<typeof TEST_SERVICE, TestContext>>,
  interceptors: ServiceInterceptor<TestContext>[] = [],
): Promise<Client> {
  const unimplemented = async () => {
    throw new OpalError(Code.UNIMPLEMENTED, "not in this test");
  };
  listener = await listenGrpc({
    address: "127.0.0.1:0",
    services: [
      createServiceImplementation<typeof TEST_SERVICE, TestContext>(
        TEST_SERVICE,
        {
          unloadModel: unimplemented,
          // biome-ignore lint/correctness/useYield: a stream that fails at once
          watchTelemetry: async function* () {
            await unimplemented();
          },
          loadModel: unimplemented,
          ...handlers,
        },
        { interceptors },
      ),
    ],
  });
  client = new Client(`127.0.0.1:${listener.port}`, credentials.createInsecure());
  return client;
}

function unload(c: Client, modelId: string, deadline?: Date) {
  return new Promise<{ wasLoaded: boolean }>((resolve, reject) =>
    c.makeUnaryRequest(
      D.unloadModel.path,
      D.unloadModel.requestSerialize,
      D.unloadModel.responseDeserialize,
      { modelId },
      deadline ? { deadline } : {},
      (error, value) => (error ? reject(error) : resolve(value as { wasLoaded: boolean })),
    ),
  );
}

describe("createServiceImplementation over listenGrpc", () => {
  it("serves a typed unary handler behind interceptors run outermost first, with their values", async () => {
    const order: string[] = [];
    const c = await serve(
      {
        unloadModel: async (request, ctx) => {
          order.push(`handler ${ctx.method} ${ctx.tenant}`);
          return { wasLoaded: request.modelId === "m" };
        },
      },
      [
        async (call, next) => {
          order.push(`outer ${call.kind}`);
          await next();
          order.push("outer after");
        },
        async (call, next) => {
          call.context.tenant = "tenant-a";
          order.push("inner");
          await next();
          order.push("inner after");
        },
      ],
    );
    expect(await unload(c, "m")).toMatchObject({ wasLoaded: true });
    expect(order).toEqual([
      "outer unary",
      "inner",
      "handler UnloadModel tenant-a",
      "inner after",
      "outer after",
    ]);
  });

  it("ends a call with a thrown OpalError's rich status, and anything else with INTERNAL", async () => {
    const seen: unknown[] = [];
    const c = await serve(
      {
        unloadModel: async (request) => {
          if (request.modelId === "busy")
            throw new OpalError(Code.RESOURCE_EXHAUSTED, "busy", {
              reason: Reason.DEVICE_BUSY,
              retryDelayMs: 250,
            });
          throw new Error("secret detail");
        },
      },
      [
        async (_call, next) => {
          try {
            await next();
          } catch (error) {
            seen.push(error);
            throw error;
          }
        },
      ],
    );
    const busy = fromGrpcStatus((await unload(c, "busy").catch((e) => e)) as ServiceError);
    expect(busy).toMatchObject({ code: Code.RESOURCE_EXHAUSTED, reason: Reason.DEVICE_BUSY });
    expect(busy.retryDelayMs).toBe(250);
    const internal = fromGrpcStatus((await unload(c, "x").catch((e) => e)) as ServiceError);
    expect(internal).toMatchObject({ code: Code.INTERNAL, reason: Reason.INTERNAL });
    expect(internal.rawMessage).toBe("internal error");
    // Interceptors see the error thrown, before it becomes a status.
    expect((seen[1] as Error).message).toBe("secret detail");
  });

  it("refuses a call an interceptor throws for, without running the handler", async () => {
    let ran = false;
    const c = await serve(
      {
        unloadModel: async () => {
          ran = true;
          return {};
        },
      },
      [
        async () => {
          throw new OpalError(Code.UNAUTHENTICATED, "no token", { reason: Reason.TOKEN_INVALID });
        },
      ],
    );
    const error = fromGrpcStatus((await unload(c, "m").catch((e) => e)) as ServiceError);
    expect(error).toMatchObject({ code: Code.UNAUTHENTICATED, reason: Reason.TOKEN_INVALID });
    expect(ran).toBe(false);
  });

  it("keeps a handler's own AbortError (its call not aborted) as thrown: INTERNAL", async () => {
    const seen: unknown[] = [];
    const own = new DOMException("the handler's own timer", "AbortError");
    const c = await serve(
      {
        unloadModel: async () => {
          throw own;
        },
      },
      [
        async (_call, next) => {
          await next().catch((error: unknown) => {
            seen.push(error);
            throw error;
          });
        },
      ],
    );
    const error = fromGrpcStatus((await unload(c, "m").catch((e) => e)) as ServiceError);
    expect(error).toMatchObject({ code: Code.INTERNAL, reason: Reason.INTERNAL });
    expect(seen).toEqual([own]);
  });

  it("refuses a streamStallTimeoutMs that is not an integer from 1 to MAX_TIMER_MS", () => {
    const handlers = {
      unloadModel: async () => ({}),
      watchTelemetry: async function* () {},
      loadModel: async () => ({}),
    };
    for (const streamStallTimeoutMs of [0, -1, 1.5, MAX_TIMER_MS + 1, Number.NaN]) {
      expect(() =>
        createServiceImplementation(TEST_SERVICE, handlers, { streamStallTimeoutMs }),
      ).toThrow(expect.objectContaining({ code: Code.INVALID_ARGUMENT }));
    }
    expect(() =>
      createServiceImplementation(TEST_SERVICE, handlers, { streamStallTimeoutMs: MAX_TIMER_MS }),
    ).not.toThrow();
  });

  it("aborts ctx.signal with DEADLINE_EXCEEDED at the call's deadline", async () => {
    let reason: unknown;
    const c = await serve({
      unloadModel: async (_request, ctx) => {
        await new Promise((wake) => ctx.signal.addEventListener("abort", wake));
        reason = ctx.signal.reason;
        return {};
      },
    });
    await unload(c, "m", new Date(Date.now() + 100)).catch(() => {});
    await expect.poll(() => reason).toBeInstanceOf(OpalError);
    expect(reason).toMatchObject({
      code: Code.DEADLINE_EXCEEDED,
      reason: Reason.DEADLINE_EXCEEDED,
    });
  });

  it("refuses a request that does not parse with INVALID_ARGUMENT, after the interceptors", async () => {
    const order: string[] = [];
    const c = await serve(
      {
        unloadModel: async () => {
          order.push("handler");
          return {};
        },
      },
      [
        async (_call, next) => {
          order.push("interceptor");
          await next();
        },
      ],
    );
    const error = await new Promise<ServiceError>((resolve) =>
      c.makeUnaryRequest(
        D.unloadModel.path,
        (bytes: Buffer) => bytes,
        D.unloadModel.responseDeserialize,
        Buffer.from([0x0a, 0xff]),
        (e) => resolve(e as ServiceError),
      ),
    );
    expect(fromGrpcStatus(error)).toMatchObject({
      code: Code.INVALID_ARGUMENT,
      reason: Reason.INVALID_FIELD,
    });
    expect(fromGrpcStatus(error).rawMessage).toMatch(/^not a valid UnloadModel request: /);
    expect(order).toEqual(["interceptor"]);
  });

  it("ends a client stream with INVALID_ARGUMENT when one of its messages does not parse", async () => {
    const read: string[] = [];
    const c = await serve({
      loadModel: async (requests) => {
        for await (const request of requests) read.push(request.header?.modelId ?? "chunk");
        return {};
      },
    });
    const error = await new Promise<ServiceError>((resolve) => {
      const call = c.makeClientStreamRequest(
        D.loadModel.path,
        (bytes: Buffer) => bytes,
        D.loadModel.responseDeserialize,
        (e) => resolve(e as ServiceError),
      );
      call.write(D.loadModel.requestSerialize({ header: { modelId: "m" } }));
      call.write(Buffer.from([0x0a, 0xff]));
      call.end();
    });
    expect(fromGrpcStatus(error)).toMatchObject({
      code: Code.INVALID_ARGUMENT,
      reason: Reason.INVALID_FIELD,
    });
    expect(fromGrpcStatus(error).rawMessage).toMatch(/^not a valid LoadModel request: /);
    expect(read).toEqual(["m"]);
  });

  it("streams a typed server-streaming handler's responses, and its cancellation reaches ctx.signal", async () => {
    let reason: unknown;
    const aborted = new Promise<void>((resolve) => {
      void serve({
        watchTelemetry: async function* (request, ctx) {
          for (let i = 0; i < 3; i++) yield { snapshot: { queueDepth: request.intervalMs + i } };
          await new Promise((wake) => ctx.signal.addEventListener("abort", wake));
          reason = ctx.signal.reason;
          resolve();
        },
      }).then((c) => {
        const call = c.makeServerStreamRequest(
          D.watchTelemetry.path,
          D.watchTelemetry.requestSerialize,
          D.watchTelemetry.responseDeserialize,
          { intervalMs: 10 },
        );
        const depths: number[] = [];
        call.on("error", () => {});
        call.on("data", (m: { snapshot: { queueDepth: number } }) => {
          depths.push(m.snapshot.queueDepth);
          if (depths.length === 3) {
            expect(depths).toEqual([10, 11, 12]);
            call.cancel();
          }
        });
      });
    });
    await aborted;
    expect(reason).toBeInstanceOf(OpalError);
    expect(reason).toMatchObject({ code: Code.CANCELLED, reason: Reason.CANCELLED });
  });

  it("hands a typed client-streaming handler the caller's messages as an AsyncIterable", async () => {
    const c = await serve({
      loadModel: async (requests) => {
        let bytes = 0;
        let modelId = "";
        for await (const request of requests) {
          modelId ||= request.header?.modelId ?? "";
          bytes += request.weightsChunk?.byteLength ?? 0;
        }
        return { model: { modelId, numLayers: bytes } };
      },
    });
    const response = await new Promise<{ model: { modelId: string; numLayers: number } }>(
      (resolve, reject) => {
        const call = c.makeClientStreamRequest(
          D.loadModel.path,
          D.loadModel.requestSerialize,
          D.loadModel.responseDeserialize,
          (error, value) => (error ? reject(error) : resolve(value as never)),
        );
        call.write({ header: { modelId: "m" } });
        call.write({ weightsChunk: new Uint8Array(3) });
        call.write({ weightsChunk: new Uint8Array(4) });
        call.end();
      },
    );
    expect(response.model.modelId).toBe("m");
    expect(response.model.numLayers).toBe(7);
  });
});
