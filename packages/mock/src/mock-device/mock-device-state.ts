import { randomBytes } from "node:crypto";
import { type CallRegistry, Code, createCallRegistry, OpalError, Reason } from "@opal/core";
import {
  createDeviceSlots,
  type DeviceCapabilities,
  type DeviceInfo,
  type DeviceSlots,
  PROTOCOL_VERSION,
  type PrefillStats,
} from "@opal/driver";
import type { FaultConfig } from "../fault-config";
import { createFaultInjector, type FaultInjector } from "../fault-injector";
import { mockCapabilities, mockRetentionQuotas } from "../mock-capabilities";
import type { MockDeviceOptions } from "../mock-device";
import { createNamedMockModel, type MockModel } from "../mock-model";
import { type MockProfile, mockProfile } from "../mock-profile";
import { createPrefixCache, type PrefixCache } from "../prefix-cache";
import { createRetentionStore, type RetentionStore } from "../retention-store";

/** What the mock remembers of a request id (`PF-5`..`PF-7`): its body, handle and statistics. */
export interface RememberedRequest {
  readonly bodyHash: string;
  readonly handle: string;
  readonly stats?: PrefillStats;
}

/**
 * The whole state of one mock device; the stage functions (`admitPrefill`, `computePrefill`,
 * `retainPrefill`, `streamPrefill`, …) read and update it. Counters and `faults` are mutable; the
 * rest is fixed at creation.
 */
export interface MockDeviceState {
  readonly profile: MockProfile;
  /** Clock in ms since the Unix epoch (leases, telemetry). */
  readonly now: () => number;
  readonly capabilities: DeviceCapabilities;
  readonly info: DeviceInfo;
  /** Loaded models by id. */
  readonly models: Map<string, MockModel>;
  /** At most this many models loaded at once. */
  readonly maxModels: number;
  /** The faults in force; replaced by {@link setMockFaults}. */
  faults: FaultInjector;
  /** Faults injected since start, under every configuration. */
  faultsInjected: number;
  readonly slots: DeviceSlots;
  readonly store: RetentionStore;
  readonly prefixCache: PrefixCache;
  /** Request ids by `tenant\0requestId`, the oldest first; at most {@link MAX_REMEMBERED_REQUESTS}. */
  readonly requests: Map<string, RememberedRequest>;
  readonly startedAtMs: number;
  /** Energy of prefills, in J: completed ones in full, ended ones for the device time they ran. */
  activeEnergyJoules: number;
  prefillsStarted: number;
  prefillsCompleted: number;
  closed: boolean;
  /** Calls in progress: `close()` aborts them. */
  readonly calls: CallRegistry;
  readonly onConnectionDrop: (() => Promise<void>) | undefined;
}

/** How many request ids the mock remembers; the oldest is forgotten first. */
export const MAX_REMEMBERED_REQUESTS = 10_000;

/**
 * Creates the state of a mock device from its options. INVALID_ARGUMENT for an unknown profile or
 * model, invalid limits or an invalid fault configuration.
 */
export function createMockDeviceState(options: MockDeviceOptions): MockDeviceState {
  const profile =
    typeof options.profile === "object"
      ? options.profile
      : mockProfile(options.profile ?? "instant");
  const now = options.now ?? Date.now;
  const limits = options.limits ?? {};
  const capabilities = mockCapabilities(limits, profile);
  const models = new Map<string, MockModel>();
  for (const name of options.models ?? []) models.set(name, createNamedMockModel(name));
  const quotas = mockRetentionQuotas(limits);
  const state: MockDeviceState = {
    profile,
    now,
    capabilities,
    info: {
      protocolVersion: PROTOCOL_VERSION,
      vendor: "OPAL",
      product: `Iris-style mock device (${profile.name})`,
      firmwareVersion: "mock-1",
      driverVersion: "0.1.0",
      deviceId: options.deviceId ?? `mock-${randomBytes(4).toString("hex")}`,
      extensions: [],
    },
    models,
    maxModels: limits.maxLoadedModels ?? 64,
    // The count outlives each injector: setMockFaults replaces it while older streams still run.
    faults: createFaultInjector(options.faults, { onInjected: () => state.faultsInjected++ }),
    faultsInjected: 0,
    slots: createDeviceSlots(capabilities.maxConcurrentPrefills, capabilities.maxQueuedPrefills),
    store: createRetentionStore(
      {
        maxBytes: capabilities.retention.maxRetainedBytes,
        maxBytesPerTenant: quotas.maxRetainedBytesPerTenant,
        maxLeasesPerTenant: quotas.maxLeasesPerTenant,
      },
      now,
    ),
    prefixCache: createPrefixCache(100_000),
    requests: new Map(),
    startedAtMs: now(),
    activeEnergyJoules: 0,
    prefillsStarted: 0,
    prefillsCompleted: 0,
    closed: false,
    calls: createCallRegistry(),
    onConnectionDrop: options.onConnectionDrop,
  };
  return state;
}

/**
 * Replaces the faults in force (effective for the next calls); INVALID_ARGUMENT naming the field
 * when `config` is not valid, leaving the current faults in place.
 */
export function setMockFaults(state: MockDeviceState, config: FaultConfig | undefined): void {
  state.faults = createFaultInjector(config, { onInjected: () => state.faultsInjected++ });
}

/** The error of every call on a closed device: UNAVAILABLE `SHUTTING_DOWN`. */
export function mockDeviceClosedError(): OpalError {
  return new OpalError(Code.UNAVAILABLE, "device is closed", { reason: Reason.SHUTTING_DOWN });
}
