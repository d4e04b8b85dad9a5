import { Code, OpalError, Reason } from "@opal/core";
import {
  type DeviceCapabilities,
  type PrefillDriver,
  type PrefillEvent,
  prefillBodyDigest,
  type ReceivedPrefillRequest,
  validatePrefillRequest,
} from "@opal/driver";
import { fromWirePrefillRequest, type opal } from "@opal/protocol";
import type { DeviceCallContext } from "./device-call-context";
import type { HandlerContext, RunningPrefill, RunningPrefills } from "./handler-context";
import { prefillThroughRegion, sharedMemoryOffer } from "./prefill-through-region";
import { pushKv } from "./push-kv";
import { assertPushTargetAllowed } from "./push-target-policy";
import type { HostPrefillEvent } from "./shared-memory-region";
import { withHostFeatures } from "./with-host-features";

/**
 * Starts a Prefill call in `PF-1` order and resolves to its events: the push-target allow-list
 * (stage 1, PS-1), the request (stage 4: the driver gets it as received and validates it; the
 * host validates first what it handles itself, the shared-memory region and the push target),
 * request identity (stage 5: a running call with the same tenant, `request_id` and body is
 * superseded, PF-7; another body fails ALREADY_EXISTS REQUEST_ID_CONFLICT, PF-6), then the
 * tenant's concurrency slot and, for a driver that does not queue prefills itself, a device slot
 * (stage 6: queued up to `maxQueuedPrefills`, else RESOURCE_EXHAUSTED DEVICE_BUSY), both held
 * until the call's scope ends (completion, cancellation, deadline). A superseded call gives its slots back at once, so a retry
 * is served even when its tenant is at its limit; any other call refused at stage 5 or 6 gets the
 * request's own errors first. Time spent queued for a device slot is added to `queue_time_us`.
 */
export async function hostPrefill(
  ctx: HandlerContext,
  wire: opal.device.v1.PrefillRequest,
  scope: DeviceCallContext,
): Promise<AsyncIterable<HostPrefillEvent>> {
  const call = { signal: scope.signal, tenant: scope.tenant };
  const queued = { us: 0 };
  const driver = ctx.slots ? withQueueTime(ctx.driver, queued) : ctx.driver;
  const request = fromWirePrefillRequest(wire);
  const target = request.pushTarget?.address;
  if (target !== undefined) assertPushTargetAllowed(target, ctx.pushTargets, scope.peer);
  const capabilities = withHostFeatures(ctx.capabilities, ctx);
  const admit = async () => {
    queued.us = await admitPrefill(ctx, scope, request, capabilities);
  };
  const region = sharedMemoryOffer(wire, ctx.sharedMemory, scope.peer);
  if (region) return prefillThroughRegion({ driver, capabilities, call }, request, region, admit);
  if (!request.pushTarget || !ctx.hostPush) {
    await admit();
    return driver.prefill(request, call);
  }
  // The host pushes for drivers that do not: the driver streams as usual, the host forwards. The
  // driver sees the request without its push target, and the whole request's body digest (PF-5).
  const { pushTarget, ...inline } = request;
  // The driver never sees the push target, so the host checks it, at its PF-1 place.
  if (!pushTarget.address || !pushTarget.transferId) {
    await throwRequestError(ctx, scope, request, capabilities);
  }
  await admit();
  const bodyDigest = prefillBodyDigest(request);
  return pushKv(
    pushTarget,
    request.requestId,
    driver.prefill(inline, { ...call, bodyDigest }),
    scope.signal,
    ctx.stallTimeoutMs,
  );
}

/**
 * Stages 5 and 6 of a valid request: supersede a running retry's original, then take the tenant's
 * slot and the device slot (when the host holds them); resolves with the µs queued.
 */
async function admitPrefill(
  ctx: HandlerContext,
  scope: DeviceCallContext,
  request: ReceivedPrefillRequest,
  capabilities: DeviceCapabilities,
): Promise<number> {
  const refuse = async (error: unknown): Promise<never> => {
    // PF-1: the request's own errors (stage 4) come before identity and admission (stages 5, 6).
    await throwRequestError(ctx, scope, request, capabilities);
    throw error;
  };
  const running = supersedeRunning(ctx.running, scope, request);
  if (running instanceof OpalError) return refuse(running);
  let releaseTenant: () => void;
  try {
    releaseTenant = ctx.limiter.acquireStream(scope.tenant);
  } catch (quotaExceeded) {
    return refuse(quotaExceeded);
  }
  scope.onDispose(releaseTenant);
  running.releaseSlot = releaseTenant;
  if (!ctx.slots) return 0;
  // A request that would queue or be refused is checked first, so it never waits to fail.
  if (ctx.slots.active > 0) await throwRequestError(ctx, scope, request, capabilities);
  const slot = await ctx.slots.acquire(scope.signal, request.priority);
  scope.onDispose(slot.release);
  running.releaseSlot = () => {
    releaseTenant();
    slot.release();
  };
  return slot.queueTimeUs;
}

/** The driver with the host's queue time added to `accepted` and `completed` (`PF-11`, `PF-17`). */
function withQueueTime(driver: PrefillDriver, queued: { us: number }): PrefillDriver {
  return {
    ...driver,
    prefill: async function* (request, options): AsyncGenerator<PrefillEvent> {
      for await (const event of driver.prefill(request, options)) {
        if (event.type === "accepted")
          yield { ...event, queueTimeUs: event.queueTimeUs + queued.us };
        else if (event.type === "completed")
          yield {
            ...event,
            stats: { ...event.stats, queueTimeUs: event.stats.queueTimeUs + queued.us },
          };
        else yield event;
      }
    },
  };
}

/**
 * Throws the request's first error in `PF-1` stage-4 order, as the driver validates it, with the
 * features the host adds (push, shared memory); returns when the request is valid.
 */
async function throwRequestError(
  ctx: HandlerContext,
  scope: DeviceCallContext,
  request: ReceivedPrefillRequest,
  capabilities: DeviceCapabilities,
): Promise<void> {
  const call = { signal: scope.signal, tenant: scope.tenant };
  const model = (await ctx.driver.listModels(call)).find((m) => m.modelId === request.modelId);
  validatePrefillRequest(request, { capabilities, model });
}

/**
 * PF-7: a retry with the same request_id and body while the first call still runs ends the first
 * with CANCELLED and is served itself, so the device never computes one request twice at once;
 * the first call's slots are given back at once. A call with the same id and another body is
 * returned as ALREADY_EXISTS REQUEST_ID_CONFLICT (PF-6), leaving the running call alone. The body
 * is `prefillBodyDigest` of the whole request (push target included), the definition the mock
 * uses too. A call stays registered until its scope ends (not by wrapping its event stream, the
 * KV hot path).
 */
function supersedeRunning(
  running: RunningPrefills,
  scope: DeviceCallContext,
  request: ReceivedPrefillRequest,
): RunningPrefill | OpalError {
  const key = `${scope.tenant}\0${request.requestId}`;
  const body = prefillBodyDigest(request);
  const earlier = running.get(key);
  if (earlier && earlier.body !== body) {
    return new OpalError(
      Code.ALREADY_EXISTS,
      `request_id ${JSON.stringify(request.requestId)} is running with a different request`,
      { reason: Reason.REQUEST_ID_CONFLICT },
    );
  }
  if (earlier) {
    earlier.scope.abort(
      new OpalError(Code.CANCELLED, "superseded by a retry with the same request_id", {
        reason: Reason.CANCELLED,
      }),
    );
    earlier.releaseSlot();
  }
  const entry: RunningPrefill = { body, scope, releaseSlot: () => {} };
  running.set(key, entry);
  scope.onDispose(() => {
    if (running.get(key) === entry) running.delete(key);
  });
  return entry;
}
