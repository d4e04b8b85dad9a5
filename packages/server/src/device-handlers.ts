import type {
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
  sendUnaryData,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { Code, invalidField, OpalError, Reason, toAbortError } from "@opal/core";
import { telemetryIntervalMs } from "@opal/driver";
import {
  assertWellFormed,
  fromWireFetchRequest,
  type opal,
  probeStateEnum,
  toGrpcStatus,
  toWireCapabilities,
  toWireFetchEvent,
  toWireInfo,
  toWireLoadResult,
  toWireModel,
  toWireTelemetry,
} from "@opal/protocol";
import { type CallScope, type CallScopeOptions, openCallScope } from "./call-scope";
import { checkedWeights } from "./checked-weights";
import type { HandlerContext } from "./handler-context";
import { hostPrefill } from "./host-prefill";
import { nextWithin } from "./next-within";
import { toWireHostPrefillEvent } from "./prefill-through-region";
import { waitForDrain } from "./wait-for-drain";
import { withHostFeatures } from "./with-host-features";

type V1 = typeof opal.device.v1;
type Msg<T extends keyof V1> = V1[T] extends { prototype: infer I } ? I : never;

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
      // RT-17: a device without retention holds no lease to end.
      if (!retains(ctx)) return { released: false };
      return driver.releaseKv(req.kvHandle, opts(s));
    }),
    loadModel: loadModelHandler(ctx),
    prefill: serverStream(
      ctx,
      "Prefill",
      (req: Msg<"PrefillRequest">, s) => hostPrefill(ctx, req, s),
      toWireHostPrefillEvent,
    ),
    fetchKv: serverStream(
      ctx,
      "FetchKv",
      (req: Msg<"FetchKvRequest">, s) => {
        assertHandle(req.kvHandle);
        assertFetchable(ctx, req);
        // FetchKv streams share the tenant's concurrency limit with prefills.
        s.onDispose(ctx.registry.limiter.acquireStream(s.tenant));
        return driver.fetchKv(fromWireFetchRequest(req), opts(s));
      },
      toWireFetchEvent,
    ),
    watchTelemetry: serverStream(
      ctx,
      "WatchTelemetry",
      (req: Msg<"WatchTelemetryRequest">, s) =>
        mapIterable(
          driver.watchTelemetry({ intervalMs: telemetryIntervalMs(req.intervalMs) }, opts(s)),
          (snapshot) => ({
            snapshot: toWireTelemetry(snapshot),
          }),
        ),
      (m) => m,
      { watch: true },
    ),
  };
}

function opts(scope: CallScope) {
  return { signal: scope.signal, tenant: scope.tenant };
}

function unary<Req, Res>(
  ctx: HandlerContext,
  method: string,
  run: (request: Req, scope: CallScope) => Promise<Res>,
  scopeOptions: CallScopeOptions = {},
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

/**
 * A server-streaming handler: `run` starts the call (admission included: a limited call takes its
 * slot there and gives it back with `scope.onDispose`) and resolves to its events.
 */
function serverStream<Req, Ev, Wire>(
  ctx: HandlerContext,
  method: string,
  run: (request: Req, scope: CallScope) => AsyncIterable<Ev> | Promise<AsyncIterable<Ev>>,
  toWire: (event: Ev) => Wire,
  scopeOptions: CallScopeOptions = {},
) {
  return async (call: ServerWritableStream<Req, Wire>) => {
    const started = performance.now();
    let scope: CallScope | undefined;
    const closeStream = ctx.metrics?.streamOpened(method);
    try {
      scope = await openCallScope(call, ctx.registry, scopeOptions);
      assertWellFormed(call.request);
      const signal = scope.signal;
      for await (const event of await run(call.request, scope)) {
        if (signal.aborted) throw toAbortError(signal.reason);
        const wire = toWire(event);
        const carried = event as {
          chunk?: { data: Uint8Array };
          dataRef?: { lengthBytes: number };
        };
        const chunkBytes = carried.chunk?.data.byteLength || carried.dataRef?.lengthBytes;
        if (chunkBytes) ctx.metrics?.addKvBytes(chunkBytes);
        // Back-pressure: a slow reader stops us here instead of growing the write buffer; one
        // that stops reading is ended after the stall timeout, freeing its slots.
        if (!call.write(wire)) await waitForDrain(call, signal, ctx.stallTimeoutMs);
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
      const first = await nextWithin(messages, ctx.uploadIdleTimeoutMs);
      if (!first.done) assertWellFormed(first.value);
      const header = first.done ? undefined : first.value.header;
      if (!header)
        throw invalidField("header", "the first LoadModel message must carry the header");
      // The check order of models.md ("LoadModel checks, in order"): header, model_id, config,
      // one weight source (MD-5), uploads supported and within max_model_bytes (MD-6).
      if (!header.modelId) throw invalidField("header.model_id", "required, got an empty string");
      if (!MODEL_ID.test(header.modelId))
        throw invalidField(
          "header.model_id",
          `expected 1-128 characters of [A-Za-z0-9._:/-], got ${JSON.stringify(header.modelId)}`,
        );
      if (!header.configJson)
        throw invalidField("header.config_json", "required, got an empty string");
      const byteLength = Number(header.weightsByteLength ?? 0);
      if (header.deviceLocalRef ? byteLength !== 0 : byteLength < 1)
        throw invalidField(
          "header.weights_byte_length",
          header.deviceLocalRef
            ? `expected 0 with device_local_ref, got ${byteLength}`
            : "expected >= 1 with uploaded weights (or a device_local_ref), got 0",
        );
      const maxModelBytes = ctx.capabilities.maxModelBytes;
      if (!header.deviceLocalRef && maxModelBytes === 0) {
        throw new OpalError(Code.UNIMPLEMENTED, "this device accepts no model uploads", {
          reason: Reason.UNSUPPORTED_FEATURE,
          fieldViolations: [
            {
              field: "header.weights_byte_length",
              description: "uploads unsupported (capabilities.max_model_bytes = 0)",
            },
          ],
        });
      }
      if (!header.deviceLocalRef && byteLength > maxModelBytes) {
        throw new OpalError(
          Code.RESOURCE_EXHAUSTED,
          `weights of ${byteLength} bytes exceed the device limit of ${maxModelBytes} bytes`,
          { reason: Reason.MESSAGE_TOO_LARGE },
        );
      }
      // MD-20: an upload takes one of the device's upload slots and its declared bytes.
      if (!header.deviceLocalRef) scope.onDispose(ctx.uploads.admit(byteLength));
      const result = await ctx.driver.loadModel(
        {
          modelId: header.modelId,
          configJson: header.configJson,
          ...(header.deviceLocalRef
            ? { deviceLocalRef: header.deviceLocalRef }
            : {
                weights: checkedWeights(
                  messages,
                  byteLength,
                  header.weightsSha256 || undefined,
                  ctx.uploadIdleTimeoutMs,
                ),
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

/** A model id (models.md, MD-5). */
const MODEL_ID = /^[A-Za-z0-9._:/-]{1,128}$/;

/** The device declares retention (`max_retention_seconds > 0`). */
function retains(ctx: HandlerContext): boolean {
  return ctx.capabilities.retention.maxRetentionSeconds > 0;
}

/**
 * RT-11 and the FetchKv error table, after the handle's own check: a device without retention
 * answers every FetchKv UNIMPLEMENTED UNSUPPORTED_FEATURE naming `kv_handle`, and `resume_from`
 * without `features.resume` is UNSUPPORTED_FEATURE naming it; the driver never sees either.
 */
function assertFetchable(ctx: HandlerContext, request: Msg<"FetchKvRequest">): void {
  const unsupported = (field: string, description: string) =>
    new OpalError(Code.UNIMPLEMENTED, `${field}: ${description}`, {
      reason: Reason.UNSUPPORTED_FEATURE,
      fieldViolations: [{ field, description }],
    });
  if (!retains(ctx))
    throw unsupported(
      "kv_handle",
      "this device retains no caches (capabilities.retention.max_retention_seconds = 0)",
    );
  if (request.resumeFrom && !ctx.capabilities.features.resume)
    throw unsupported("resume_from", "resume is not declared (capabilities.features.resume)");
}

/** A KV handle is 1-128 characters (retention.md); anything else is a malformed request. */
function assertHandle(handle: string): void {
  if (!handle) throw invalidField("kv_handle", "required, got an empty string");
  if (handle.length > 128)
    throw invalidField("kv_handle", `expected at most 128 characters, got ${handle.length}`);
}
