import { createHash } from "node:crypto";
import { Code, OpalError, Reason } from "@opal/core";
import { type DeviceCapabilities, type PrefillRequest, validatePrefillRequest } from "@opal/driver";
import { fromWirePrefillRequest, opal } from "@opal/protocol";
import type { CallScope } from "./call-scope";
import type { HandlerContext, RunningPrefill, RunningPrefills } from "./handler-context";
import { prefillThroughRegion, sharedMemoryOffer } from "./prefill-through-region";
import { pushKv } from "./push-kv";
import { assertPushTargetAllowed } from "./push-target-policy";
import type { HostPrefillEvent } from "./shared-memory-region";
import { withHostFeatures } from "./with-host-features";

/**
 * Starts a Prefill call in `PF-1` order and resolves to its events: the push-target allow-list
 * (stage 1, PS-1), the request (stage 4: the driver validates it; the host validates first what
 * it handles itself, the shared-memory region and the push target), a running call with the same
 * tenant, `request_id` and body superseded (stage 5, PF-7), then the tenant's concurrency slot
 * (stage 6), held until the call's scope ends. A superseded call gives its slot back at once, so
 * a retry is served even when its tenant is at its limit; any other call of a tenant at its limit
 * gets the request's own errors first, then RESOURCE_EXHAUSTED TENANT_QUOTA_EXCEEDED.
 */
export async function hostPrefill(
  ctx: HandlerContext,
  wire: opal.device.v1.PrefillRequest,
  scope: CallScope,
): Promise<AsyncIterable<HostPrefillEvent>> {
  const { driver } = ctx;
  const call = { signal: scope.signal, tenant: scope.tenant };
  const request = fromWirePrefillRequest(wire);
  const target = request.pushTarget?.address;
  if (target !== undefined) assertPushTargetAllowed(target, ctx.pushTargets, scope.peer);
  const capabilities = withHostFeatures(ctx.capabilities, ctx);
  const admit = async () => admitPrefill(ctx, scope, wire, request, capabilities);
  const region = sharedMemoryOffer(wire, ctx.sharedMemory, scope.peer);
  if (region) return prefillThroughRegion({ driver, capabilities, call }, request, region, admit);
  if (!request.pushTarget || !ctx.hostPush) {
    await admit();
    return driver.prefill(request, call);
  }
  // The host pushes for drivers that do not: the driver streams as usual, the host forwards.
  const { pushTarget, ...inline } = request;
  // The driver never sees the push target, so the host checks it, at its PF-1 place.
  if (!pushTarget.address || !pushTarget.transferId) {
    await throwRequestError(ctx, scope, request, capabilities);
  }
  await admit();
  return pushKv(
    pushTarget,
    request.requestId,
    driver.prefill(inline, call),
    scope.signal,
    ctx.stallTimeoutMs,
  );
}

/** Stages 5 and 6 of a valid request: supersede a running retry's original, then take a slot. */
async function admitPrefill(
  ctx: HandlerContext,
  scope: CallScope,
  wire: opal.device.v1.PrefillRequest,
  request: PrefillRequest,
  capabilities: DeviceCapabilities,
): Promise<void> {
  const running = supersedeRunning(ctx.running, scope, wire);
  let release: () => void;
  try {
    release = ctx.registry.limiter.acquireStream(scope.tenant);
  } catch (quotaExceeded) {
    // PF-1: the request's own errors (stage 4) come before admission (stage 6).
    await throwRequestError(ctx, scope, request, capabilities);
    throw quotaExceeded;
  }
  scope.onDispose(release);
  if (running) running.releaseSlot = release;
}

/**
 * Throws the request's first error in `PF-1` stage-4 order, as the driver validates it, with the
 * features the host adds (push, shared memory); returns when the request is valid.
 */
async function throwRequestError(
  ctx: HandlerContext,
  scope: CallScope,
  request: PrefillRequest,
  capabilities: DeviceCapabilities,
): Promise<void> {
  const call = { signal: scope.signal, tenant: scope.tenant };
  const model = (await ctx.driver.listModels(call)).find((m) => m.modelId === request.modelId);
  validatePrefillRequest(request, { capabilities, model });
}

/**
 * PF-7: a retry with the same request_id and body while the first call still runs ends the first
 * with CANCELLED and is served itself, so the device never computes one request twice at once;
 * the first call's tenant slot is given back at once. A call with the same id and another body
 * leaves the running call registered (the driver answers it REQUEST_ID_CONFLICT, PF-6) and is not
 * registered itself. A call stays registered until its scope ends (not by wrapping its event
 * stream, the KV hot path).
 */
function supersedeRunning(
  running: RunningPrefills,
  scope: CallScope,
  request: opal.device.v1.PrefillRequest,
): RunningPrefill | undefined {
  const key = `${scope.tenant}\0${request.requestId}`;
  const body = createHash("sha256")
    // The data plane is transport, not body: a retry may offer another region or none (PF-7).
    .update(
      opal.device.v1.PrefillRequest.encode({ ...request, requestId: "", dataPlane: null }).finish(),
    )
    .digest("hex");
  const earlier = running.get(key);
  if (earlier && earlier.body !== body) return undefined;
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
