/**
 * The Iris-style mock prefill device: a `PrefillDriver` computing real KV caches with the CPU
 * reference model (synthetic KV for large real-model shapes), with a timing and power model,
 * concurrency slots and a bounded queue, retention with leases, a prefix cache and seeded fault
 * injection. `opal-mock` serves it over gRPC.
 *
 * @packageDocumentation
 */

export { createMockCommand } from "./create-mock-command";
export { createMockDevice } from "./create-mock-device";
export type { ConditionFault, ErrorFault, FaultConfig } from "./fault-config";
export type { FaultInjector, StreamFaults } from "./fault-injector";
export { createFaultInjector } from "./fault-injector";
export type { MockDeviceLimits } from "./mock-capabilities";
export type { MockDevice, MockDeviceOptions } from "./mock-device";
export { mockModelFlops, toMockModelNames } from "./mock-model";
export type { MockProfile, MockProfileName, OpticalProfileOptions } from "./mock-profile";
export {
  mockProfile,
  OPTICAL_DEFAULT_BOUND,
  opticalMockProfile,
  simulatedTimeUs,
  toMockProfileNames,
} from "./mock-profile";
export type { ErrorBound, NoiseSite, OpticalNoise } from "./optical-noise";
export { applyOpticalNoise, opticalNoiseForBound } from "./optical-noise";
export type { MockServer } from "./serve-mock-device";
export { readFaultConfig, serveMockDevice } from "./serve-mock-device";
