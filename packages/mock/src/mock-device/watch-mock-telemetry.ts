import { sleep } from "@opal/core";
import { type DriverCallOptions, type TelemetrySnapshot, telemetryIntervalMs } from "@opal/driver";
import { enterMockCall } from "./enter-mock-call";
import type { MockDeviceState } from "./mock-device-state";
import { mockPowerWatts } from "./mock-power-watts";

/** The mock's `PrefillDriver.watchTelemetry`: a snapshot now, then one every interval. */
export async function* watchMockTelemetry(
  state: MockDeviceState,
  request: { intervalMs?: number },
  call?: DriverCallOptions,
): AsyncGenerator<TelemetrySnapshot> {
  const { scope } = await enterMockCall(state, "WatchTelemetry", call);
  try {
    const interval = telemetryIntervalMs(request.intervalMs);
    for (;;) {
      yield mockTelemetrySnapshot(state);
      await sleep(interval, scope.signal);
    }
  } finally {
    scope.dispose();
  }
}

/**
 * The device's telemetry now: power is idle power plus the compute draw's excess over idle ×
 * utilization; the energy total is idle power × wall time plus every prefill's energy so far.
 */
function mockTelemetrySnapshot(state: MockDeviceState): TelemetrySnapshot {
  const { profile, slots } = state;
  const utilization = slots.active / state.capabilities.maxConcurrentPrefills;
  const powerWatts =
    profile.idlePowerWatts + (mockPowerWatts(state) - profile.idlePowerWatts) * utilization;
  const idleJoules = (profile.idlePowerWatts * (state.now() - state.startedAtMs)) / 1000;
  return {
    timestampUnixMs: state.now(),
    utilization,
    queueDepth: slots.queued,
    activePrefills: slots.active,
    retainedKvBytes: state.store.byteLength,
    powerWatts,
    energyJoulesTotal: idleJoules + state.activeEnergyJoules,
    temperatureCelsius: 35 + 40 * utilization,
    conditions: state.faults.conditions(profile.activePowerWatts),
  };
}
