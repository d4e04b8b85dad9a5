import type { PrefillStats } from "@opal/driver";
import type { PrefillAdmission } from "./admit-prefill";
import type { ComputedPrefill } from "./compute-prefill";
import { MAX_REMEMBERED_REQUESTS, type MockDeviceState } from "./mock-device-state";

/**
 * Keeps a computed prefill before its first event: its cache in the retention store with its
 * statistics when `retentionSeconds > 0` (FetchKv returns them even if the stream breaks), and its
 * request id with its handle (the oldest id is forgotten past {@link MAX_REMEMBERED_REQUESTS}).
 * Throws as `RetentionStore.retain`.
 */
export function retainPrefill(
  state: MockDeviceState,
  admission: PrefillAdmission,
  prefill: { readonly tenant: string; readonly retentionSeconds: number },
  computed: ComputedPrefill,
): void {
  const { kvHandle, stats } = computed;
  if (prefill.retentionSeconds > 0) {
    state.store.retain(kvHandle, {
      tenant: prefill.tenant,
      cache: computed.output.cache,
      digest: stats.kvDigest,
      leaseExpiryUnixMs: computed.leaseExpiryUnixMs,
      stats,
    });
  }
  state.requests.set(admission.idKey, { bodyHash: admission.bodyHash, handle: kvHandle, stats });
  if (state.requests.size > MAX_REMEMBERED_REQUESTS) {
    state.requests.delete(state.requests.keys().next().value as string);
  }
}

/** Records a completed prefill's final statistics under its request id (`PF-7` replays them). */
export function rememberCompletedPrefill(
  state: MockDeviceState,
  admission: PrefillAdmission,
  kvHandle: string,
  stats: PrefillStats,
): void {
  state.requests.set(admission.idKey, { bodyHash: admission.bodyHash, handle: kvHandle, stats });
}
