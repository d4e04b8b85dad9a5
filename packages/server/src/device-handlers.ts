import { createHash } from "node:crypto";
import { once } from "node:events";
import type {
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
  sendUnaryData,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { Code, OpalError, Reason, toAbortError } from "@opal/core";
import type { DeviceCapabilities, PrefillDriver } from "@opal/driver";
import {
  assertWellFormed,
  fromWireFetchRequest,
  fromWirePrefillRequest,
  opal,
  probeStateEnum,
  toGrpcStatus,
  toWireCapabilities,
  toWireFetchEvent,
  toWireInfo,
  toWireLoadResult,
  toWireModel,
  toWireTelemetry,
} from "@opal/protocol";
import type { Logger } from "pino";
import { type CallScope, openCallScope, type ScopeRegistry } from "./call-scope";
import { checkedWeights } from "./checked-weights";
import { invalidField } from "./invalid-field";
import {
  prefillThroughRegion,
  sharedMemoryOffer,
  toWireHostPrefillEvent,
} from "./prefill-through-region";
import { pushKv } from "./push-kv";
import type { ServerMetrics } from "./server-metrics";

type V1 = typeof opal.device.v1;
type Msg<T extends keyof V1> = V1[T] extends { prototype: infer I } ? I : never;

/** Everything the handlers share. */
export interface HandlerContext {
  readonly driver: PrefillDriver;
  readonly capabilities: DeviceCapabilities;
  readonly registry: ScopeRegistry;
  readonly metrics: ServerMetrics | undefined;
  readonly logger: Logger;
  /** The host implements push for a driver that does not declare it. */
  readonly hostPush: boolean;
  /** Prefill calls in progress (PF-7). */
  readonly running: RunningPrefills;
  /** Push targets the operator allows (PS-1); undefined: any. */
  readonly pushTargets: ReadonlySet<string> | undefined;
  /** The host offers the shared-memory data plane (PF-43). */
  readonly sharedMemory: boolean;
}

/** The `opal.device.v1.DeviceService` implementation over a driver. */
export function createDeviceHandlers(ctx: HandlerContext): UntypedServiceImplementation {
  const { driver } = ctx;
  return {
    // GetInfo is answered while shutting down (errors.md), so clients can still identify the device.
    getInfo: unary(ctx, "GetInfo", async (_req, s) => toWireInfo(await driver.getInfo(opts(s))), {
      servedWhileShuttingDown: true,
    }),
    getCapabilities: unary(ctx, "GetCapabilities", async (_req, s) => ({
      capabilities: toWireCapabilities(
        withHostFeatures(await driver.getCapabilities(opts(s)), ctx),
      ),
    })),
    probe: unary(ctx, "Probe", async (_req, s) => ({
      state: probeStateEnum.toWire(await driver.probe(opts(s))),
    })),
    listModels: unary(ctx, "ListModels", async (_req, s) => ({
      models: (await driver.listModels(opts(s))).map(toWireModel),
    })),
    unloadModel: unary(ctx, "UnloadModel", async (req: Msg<"UnloadModelRequest">, s) => {
      if (!req.modelId) throw invalidField("model_id", "required, got an empty string");
      return driver.unloadModel(req.modelId, opts(s));
    }),
    releaseKv: unary(ctx, "ReleaseKv", async (req: Msg<"ReleaseKvRequest">, s) => {
      assertHandle(req.kvHandle);
      return driver.releaseKv(req.kvHandle, opts(s));
    }),
    loadModel: loadModelHandler(ctx),
    prefill: serverStream(
      ctx,
      "Prefill",
      (req: Msg<"PrefillRequest">, s) => {
        const request = fromWirePrefillRequest(req);
        const target = request.pushTarget?.address;
        if (target !== undefined && ctx.pushTargets && !ctx.pushTargets.has(target)) {
          throw new OpalError(
            Code.PERMISSION_DENIED,
            `push_target.address ${JSON.stringify(target)} is not among the push targets this device allows`,
            { reason: Reason.PERMISSION_DENIED },
          );
        }
        const region = sharedMemoryOffer(req, ctx.sharedMemory, s.peer);
        if (region) {
          return prefillThroughRegion(
            { driver, capabilities: ctx.capabilities, call: opts(s) },
            request,
            region,
            () => supersedeRunning(ctx.running, s, req),
          );
        }
        supersedeRunning(ctx.running, s, req);
        if (!request.pushTarget || !ctx.hostPush) return driver.prefill(request, opts(s));
        // The host pushes for drivers that do not: the driver streams as usual, the host forwards.
        const { pushTarget, ...inline } = request;
        if (!pushTarget.transferId)
          throw invalidField("push_target.transfer_id", "required, got an empty string");
        return pushKv(pushTarget, request.requestId, driver.prefill(inline, opts(s)), s.signal);
      },
      toWireHostPrefillEvent,
      true,
    ),
    fetchKv: serverStream(
      ctx,
      "FetchKv",
      (req: Msg<"FetchKvRequest">, s) => {
        assertHandle(req.kvHandle);
        return driver.fetchKv(fromWireFetchRequest(req), opts(s));
      },
      toWireFetchEvent,
      true,
    ),
    watchTelemetry: serverStream(
      ctx,
      "WatchTelemetry",
      (req: Msg<"WatchTelemetryRequest">, s) =>
        mapIterable(
          driver.watchTelemetry({ intervalMs: Math.max(50, req.intervalMs || 1000) }, opts(s)),
          (snapshot) => ({
            snapshot: toWireTelemetry(snapshot),
          }),
        ),
      (m) => m,
      false,
    ),
  };
}

/** Prefill calls in progress, by tenant and request id (PF-7). */
export type RunningPrefills = Map<string, { readonly body: string; readonly scope: CallScope }>;

/**
 * PF-7: a retry with the same request_id and body while the first call still runs ends the first
 * with CANCELLED and is served itself, so the device never computes one request twice at once.
 * The call is registered until its scope ends (not by wrapping its event stream, the KV hot path).
 */
function supersedeRunning(
  running: RunningPrefills,
  scope: CallScope,
  request: Msg<"PrefillRequest">,
): void {
  const key = `${scope.tenant}\0${request.requestId}`;
  const body = createHash("sha256")
    // The data plane is transport, not body: a retry may offer another region or none (PF-7).
    .update(
      opal.device.v1.PrefillRequest.encode({ ...request, requestId: "", dataPlane: null }).finish(),
    )
    .digest("hex");
  const earlier = running.get(key);
  if (earlier && earlier.body === body) {
    earlier.scope.abort(
      new OpalError(Code.CANCELLED, "superseded by a retry with the same request_id", {
        reason: Reason.CANCELLED,
      }),
    );
  }
  const entry = { body, scope };
  running.set(key, entry);
  scope.onDispose(() => {
    if (running.get(key) === entry) running.delete(key);
  });
}

/** The driver's capabilities plus what the host adds: push for drivers that do not push, shared memory. */
function withHostFeatures(caps: DeviceCapabilities, ctx: HandlerContext): DeviceCapabilities {
  const features = ctx.hostPush ? { ...caps.features, push: true } : caps.features;
  // Requests reach drivers without `data_plane`: the host serves inline, and shared memory when on.
  const dataPlanes: DeviceCapabilities["dataPlanes"] = ctx.sharedMemory
    ? ["inline", "shared_memory"]
    : ["inline"];
  return { ...caps, features, dataPlanes };
}

function opts(scope: CallScope) {
  return { signal: scope.signal, tenant: scope.tenant };
}

function unary<Req, Res>(
  ctx: HandlerContext,
  method: string,
  run: (request: Req, scope: CallScope) => Promise<Res>,
  scopeOptions: { readonly servedWhileShuttingDown?: boolean } = {},
) {
  return async (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    const started = performance.now();
    let scope: CallScope | undefined;
    try {
      scope = await openCallScope(call, ctx.registry, scopeOptions);
      assertWellFormed(call.request);
      const response = await run(call.request, scope);
      finish(ctx, method, started, Code.OK);
      callback(null, response);
    } catch (error) {
      const status = fail(ctx, method, started, error, scope);
      callback(status);
    } finally {
      scope?.dispose();
    }
  };
}

function serverStream<Req, Ev, Wire>(
  ctx: HandlerContext,
  method: string,
  run: (request: Req, scope: CallScope) => AsyncIterable<Ev>,
  toWire: (event: Ev) => Wire,
  limited: boolean,
) {
  return async (call: ServerWritableStream<Req, Wire>) => {
    const started = performance.now();
    let scope: CallScope | undefined;
    let release: (() => void) | undefined;
    const closeStream = ctx.metrics?.streamOpened(method);
    try {
      scope = await openCallScope(call, ctx.registry);
      assertWellFormed(call.request);
      if (limited) release = ctx.registry.limiter.acquireStream(scope.tenant);
      const signal = scope.signal;
      for await (const event of run(call.request, scope)) {
        if (signal.aborted) throw toAbortError(signal.reason);
        const wire = toWire(event);
        const carried = event as {
          chunk?: { data: Uint8Array };
          dataRef?: { lengthBytes: number };
        };
        const chunkBytes = carried.chunk?.data.byteLength || carried.dataRef?.lengthBytes;
        if (chunkBytes) ctx.metrics?.addKvBytes(chunkBytes);
        // Back-pressure: a slow reader stops us here instead of growing the write buffer.
        if (!call.write(wire)) await once(call, "drain", { signal });
      }
      finish(ctx, method, started, Code.OK);
      call.end();
    } catch (error) {
      const status = fail(
        ctx,
        method,
        started,
        error instanceof Error && error.name === "AbortError" && scope
          ? toAbortError(scope.signal.reason)
          : error,
        scope,
      );
      call.emit("error", status);
    } finally {
      release?.();
      closeStream?.();
      scope?.dispose();
    }
  };
}

function loadModelHandler(ctx: HandlerContext) {
  return async (
    call: ServerReadableStream<Msg<"LoadModelRequest">, unknown>,
    callback: sendUnaryData<unknown>,
  ) => {
    const started = performance.now();
    let scope: CallScope | undefined;
    try {
      scope = await openCallScope(call, ctx.registry);
      const messages = call[Symbol.asyncIterator]() as AsyncIterator<Msg<"LoadModelRequest">>;
      const first = await messages.next();
      if (!first.done) assertWellFormed(first.value);
      const header = first.done ? undefined : first.value.header;
      if (!header)
        throw invalidField("header", "the first LoadModel message must carry the header");
      if (!header.modelId) throw invalidField("header.model_id", "required, got an empty string");
      if (!header.configJson)
        throw invalidField("header.config_json", "required, got an empty string");
      const byteLength = Number(header.weightsByteLength ?? 0);
      const maxModelBytes = ctx.capabilities.maxModelBytes;
      if (!header.deviceLocalRef && byteLength > maxModelBytes) {
        throw new OpalError(
          Code.RESOURCE_EXHAUSTED,
          `weights of ${byteLength} bytes exceed the device limit of ${maxModelBytes} bytes`,
          { reason: Reason.MESSAGE_TOO_LARGE },
        );
      }
      const result = await ctx.driver.loadModel(
        {
          modelId: header.modelId,
          configJson: header.configJson,
          ...(header.deviceLocalRef
            ? { deviceLocalRef: header.deviceLocalRef }
            : {
                weights: checkedWeights(messages, byteLength, header.weightsSha256 || undefined),
                weightsByteLength: byteLength,
              }),
          ...(header.weightsSha256 ? { weightsSha256: header.weightsSha256 } : {}),
        },
        opts(scope),
      );
      finish(ctx, "LoadModel", started, Code.OK);
      callback(null, toWireLoadResult(result));
    } catch (error) {
      // A client that goes away mid-upload is a cancellation, not a server fault worth an error log.
      const gone = (error as NodeJS.ErrnoException)?.code === "ERR_STREAM_PREMATURE_CLOSE";
      const reported = gone
        ? new OpalError(Code.CANCELLED, "the upload ended early", { reason: Reason.CANCELLED })
        : error;
      callback(fail(ctx, "LoadModel", started, reported, scope));
    } finally {
      scope?.dispose();
    }
  };
}

async function* mapIterable<A, B>(source: AsyncIterable<A>, map: (a: A) => B): AsyncIterable<B> {
  for await (const item of source) yield map(item);
}

function finish(ctx: HandlerContext, method: string, started: number, code: number): void {
  ctx.metrics?.recordCall(method, code, (performance.now() - started) / 1000);
}

function fail(
  ctx: HandlerContext,
  method: string,
  started: number,
  error: unknown,
  scope: CallScope | undefined,
) {
  const status = toGrpcStatus(error instanceof OpalError ? error : unexpected(error));
  finish(ctx, method, started, status.code);
  const log = {
    method,
    code: status.code,
    tenant: scope?.tenant,
    reason: (error as OpalError).reason,
  };
  if (status.code === Code.INTERNAL || status.code === Code.UNKNOWN) {
    ctx.logger.error({ ...log, err: error }, `${method} failed`);
  } else {
    ctx.logger.debug(log, `${method} ended with ${status.details}`);
  }
  return status;
}

function unexpected(error: unknown): OpalError {
  return new OpalError(Code.INTERNAL, "internal error", { reason: Reason.INTERNAL, cause: error });
}

/** A KV handle is 1-128 characters (retention.md); anything else is a malformed request. */
function assertHandle(handle: string): void {
  if (!handle) throw invalidField("kv_handle", "required, got an empty string");
  if (handle.length > 128)
    throw invalidField("kv_handle", `expected at most 128 characters, got ${handle.length}`);
}
