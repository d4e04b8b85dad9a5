import type { MockDeviceState } from "./mock-device-state";

/**
 * Power drawn while computing, in W: the profile's active power, limited by the power cap of the
 * faults in force, and never below idle power (a cap below idle throttles compute but cannot lower
 * the draw further).
 */
export function mockPowerWatts(state: MockDeviceState): number {
  const { profile } = state;
  const cap = state.faults.config.powerCapWatts ?? Infinity;
  return Math.max(profile.idlePowerWatts, Math.min(profile.activePowerWatts, cap));
}
