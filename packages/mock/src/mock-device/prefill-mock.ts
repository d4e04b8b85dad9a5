import { throwIfAborted } from "@opal/core";
import {
  type DriverCallOptions,
  type PrefillEvent,
  type ReceivedPrefillRequest,
  streamKvCache,
  validatePrefillRequest,
} from "@opal/driver";
import { cacheByteLength } from "@opal/kv";
import { admitPrefill, assertModelStillLoaded } from "./admit-prefill";
import { computePrefill } from "./compute-prefill";
import { enterMockCall } from "./enter-mock-call";
import type { MockDeviceState } from "./mock-device-state";
import { planPrefill } from "./plan-prefill";
import { retainPrefill } from "./retain-prefill";
import { streamPrefill } from "./stream-prefill";

/**
 * The mock's `PrefillDriver.prefill`, stage by stage: entry (faults, call signal), validation of
 * the request as received (the later stages work with the `PrefillRequest` it returns), admission
 * by request id (a conflict fails, a retained earlier result is replayed), a slot (or a place in
 * the queue), the plan, the retention budget check, compute with the timing and power model,
 * retention, and the paced stream.
 */
export async function* prefillMock(
  state: MockDeviceState,
  received: ReceivedPrefillRequest,
  call?: DriverCallOptions,
): AsyncGenerator<PrefillEvent> {
  const { scope, tenant } = await enterMockCall(state, "Prefill", call);
  const signal = scope.signal;
  const acceptedAtMs = performance.now();
  try {
    const model = state.models.get(received.modelId);
    const valid = validatePrefillRequest(received, {
      capabilities: state.capabilities,
      model: model?.info,
    });
    const { request } = valid;
    const admission = admitPrefill(state, request, { tenant, bodyDigest: call?.bodyDigest });
    if (admission.replay) {
      // Same id, same body, cache still retained: the same result, from the retained cache (PF-7).
      const { kvHandle, retained, stats } = admission.replay;
      yield* streamKvCache(retained.cache, {
        kvHandle,
        chunkBytes: valid.chunkBytes,
        signal,
        leaseExpiryUnixMs: retained.leaseExpiryUnixMs,
        stats: { ...stats, queueTimeUs: 0 },
      });
      return;
    }
    const slot = await state.slots.acquire(signal, request.priority);
    state.prefillsStarted++;
    try {
      assertModelStillLoaded(state, request.modelId, model);
      const plan = planPrefill(state, { request, valid, model: model!, tenant });
      throwIfAborted(signal);
      // PF-1 stage 6: a cache that would not fit beside the leased ones is refused before any
      // work; leased caches are never evicted for it (RT-1, RT-4).
      if (valid.retentionSeconds > 0) {
        state.store.assertFits(tenant, cacheByteLength(plan.descriptor));
      }
      const computed = computePrefill(state, plan, {
        request,
        valid,
        queueTimeUs: slot.queueTimeUs,
        signal,
      });
      retainPrefill(
        state,
        admission,
        { tenant, retentionSeconds: valid.retentionSeconds },
        computed,
      );
      yield* streamPrefill(
        state,
        { admission, plan, computed },
        { chunkBytes: valid.chunkBytes, acceptedAtMs, signal },
      );
    } finally {
      slot.release();
    }
  } finally {
    scope.dispose();
  }
}
