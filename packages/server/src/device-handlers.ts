import { Code, invalidField, OpalError, Reason } from "@opal/core";
import { type FetchEvent, type TelemetrySnapshot, telemetryIntervalMs } from "@opal/driver";
import {
  type DeviceServiceDefinition,
  fromWireFetchRequest,
  type opal,
  probeStateEnum,
  type ServiceHandlers,
  toWireCapabilities,
  toWireFetchEvent,
  toWireInfo,
  toWireModel,
  toWireTelemetry,
} from "@opal/protocol";
import type { DeviceCallContext } from "./device-call-context";
import type { HandlerContext } from "./handler-context";
import { hostPrefill } from "./host-prefill";
import { loadModel } from "./load-model";
import { toWireHostPrefillEvent } from "./prefill-through-region";
import type { HostPrefillEvent } from "./shared-memory-region";
import { withHostFeatures } from "./with-host-features";

/** Typed handlers of `opal.device.v1.DeviceService`, each with its call's context. */
export type DeviceHandlers = ServiceHandlers<typeof DeviceServiceDefinition, DeviceCallContext>;

/**
 * The `opal.device.v1.DeviceService` implementation over a driver. Admission (authentication,
 * shutdown, rate) runs before these, in the device's interceptors; a limited call takes its slot
 * here and gives it back with `call.onDispose`.
 */
export function createDeviceHandlers(ctx: HandlerContext): DeviceHandlers {
  const { driver } = ctx;
  return {
    getInfo: async (_req, call) => toWireInfo(await driver.getInfo(opts(call))),
    getCapabilities: async (_req, call) => ({
      capabilities: toWireCapabilities(
        withHostFeatures(await driver.getCapabilities(opts(call)), ctx),
      ),
    }),
    probe: async (_req, call) => ({ state: probeStateEnum.toWire(await driver.probe(opts(call))) }),
    listModels: async (_req, call) => ({
      models: (await driver.listModels(opts(call))).map(toWireModel),
    }),
    unloadModel: async (req, call) => {
      if (!req.modelId) throw invalidField("model_id", "required, got an empty string");
      return driver.unloadModel(req.modelId, opts(call));
    },
    releaseKv: async (req, call) => {
      assertHandle(req.kvHandle);
      // RT-17: a device without retention holds no lease to end.
      if (!retains(ctx)) return { released: false };
      return driver.releaseKv(req.kvHandle, opts(call));
    },
    loadModel: (requests, call) => loadModel(ctx, requests, call),
    prefill: (req, call) =>
      streamEvents(ctx, () => hostPrefill(ctx, req, call), toWireHostPrefillEvent),
    fetchKv: (req, call) =>
      streamEvents(
        ctx,
        async () => {
          assertHandle(req.kvHandle);
          assertFetchable(ctx, req);
          // FetchKv streams share the tenant's concurrency limit with prefills.
          call.onDispose(ctx.limiter.acquireStream(call.tenant));
          return driver.fetchKv(fromWireFetchRequest(req), opts(call));
        },
        toWireFetchEvent,
      ),
    watchTelemetry: (req, call) =>
      streamEvents(
        ctx,
        async () =>
          driver.watchTelemetry({ intervalMs: telemetryIntervalMs(req.intervalMs) }, opts(call)),
        (snapshot) => ({ snapshot: toWireTelemetry(snapshot) }),
      ),
  };
}

function opts(call: DeviceCallContext) {
  return { signal: call.signal, tenant: call.tenant };
}

/**
 * The wire responses of a stream `start` resolves to (starting it, admission included, when first
 * read); the KV bytes each carries are counted in the metrics.
 */
async function* streamEvents<Event extends StreamedEvent, Wire>(
  ctx: HandlerContext,
  start: () => Promise<AsyncIterable<Event>>,
  toWire: (event: Event) => Wire,
): AsyncGenerator<Wire> {
  for await (const event of await start()) {
    const chunkBytes = kvBytesOf(event);
    if (chunkBytes) ctx.metrics?.addKvBytes(chunkBytes);
    yield toWire(event);
  }
}

/** What a device stream yields: prefill (host) and fetch events, telemetry snapshots. */
type StreamedEvent = HostPrefillEvent | FetchEvent | TelemetrySnapshot;

/** The KV bytes `event` carries: a chunk's inline data, else its shared-memory `dataRef`'s. */
function kvBytesOf(event: StreamedEvent): number {
  if (!("type" in event) || event.type !== "chunk") return 0;
  return event.chunk.data.byteLength || ("dataRef" in event ? event.dataRef.lengthBytes : 0);
}

/** The device declares retention (`max_retention_seconds > 0`). */
function retains(ctx: HandlerContext): boolean {
  return ctx.capabilities.retention.maxRetentionSeconds > 0;
}

/**
 * RT-11 and the FetchKv error table, after the handle's own check: a device without retention
 * answers every FetchKv UNIMPLEMENTED UNSUPPORTED_FEATURE naming `kv_handle`, and `resume_from`
 * without `features.resume` is UNSUPPORTED_FEATURE naming it; the driver never sees either.
 */
function assertFetchable(ctx: HandlerContext, request: opal.device.v1.FetchKvRequest): void {
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
