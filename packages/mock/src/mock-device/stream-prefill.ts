import type { PrefillEvent } from "@opal/driver";
import { streamWithFaults } from "../stream-with-faults";
import type { PrefillAdmission } from "./admit-prefill";
import type { ComputedPrefill } from "./compute-prefill";
import type { MockDeviceState } from "./mock-device-state";
import type { PrefillPlan } from "./plan-prefill";
import { rememberCompletedPrefill } from "./retain-prefill";

/**
 * Streams a computed prefill: `accepted`, the cache in chunks paced over the device time (one
 * layer per `deviceTimeUs / numLayers`) with the faults in force, then `completed` with the time
 * to first chunk measured from `acceptedAtMs` (a `performance.now()` time). On completion the
 * prompt's blocks enter the prefix cache and the prefill counts as completed. Whatever ends the
 * stream, the device's energy is charged for the device time it ran (all of it once completed).
 */
export async function* streamPrefill(
  state: MockDeviceState,
  stages: {
    readonly admission: PrefillAdmission;
    readonly plan: PrefillPlan;
    readonly computed: ComputedPrefill;
  },
  options: {
    readonly chunkBytes: number;
    readonly acceptedAtMs: number;
    readonly signal: AbortSignal;
  },
): AsyncGenerator<PrefillEvent> {
  const { admission, plan, computed } = stages;
  const { kvHandle, deviceTimeUs, powerWatts } = computed;
  // Simulated compute runs from acceptance.
  const computeStartedMs = performance.now();
  let charged = false;
  try {
    yield {
      type: "accepted",
      kvHandle,
      descriptor: plan.descriptor,
      leaseExpiryUnixMs: computed.leaseExpiryUnixMs,
      queueTimeUs: computed.stats.queueTimeUs,
    };
    let firstChunkUs = 0;
    yield* streamWithFaults(computed.output.cache, {
      chunkBytes: options.chunkBytes,
      layerTimeMs: deviceTimeUs / 1000 / plan.descriptor.numLayers,
      faults: state.faults,
      signal: options.signal,
      ...(state.onConnectionDrop ? { onConnectionDrop: state.onConnectionDrop } : {}),
      onFirstChunk: () => {
        firstChunkUs = Math.round((performance.now() - options.acceptedAtMs) * 1000);
      },
    });
    state.prefixCache.insert(plan.hashes);
    state.activeEnergyJoules += computed.energyJoules;
    charged = true;
    state.prefillsCompleted++;
    const final = { ...computed.stats, timeToFirstChunkUs: firstChunkUs };
    rememberCompletedPrefill(state, admission, kvHandle, final);
    yield { type: "completed", stats: final };
  } finally {
    if (!charged) {
      const ranUs = Math.min(deviceTimeUs, (performance.now() - computeStartedMs) * 1000);
      state.activeEnergyJoules += (powerWatts * ranUs) / 1e6;
    }
  }
}
