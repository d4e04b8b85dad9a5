import type { PrefillDriver } from "@opal/driver";
import type { FaultConfig } from "./fault-config";
import type { MockDeviceLimits } from "./mock-capabilities";
import type { MockProfile, MockProfileName } from "./mock-profile";

/** Options of `createMockDevice`; every field is optional. */
export interface MockDeviceOptions {
  /** Timing, power and numerics; a built-in name or a custom profile; default "instant". */
  readonly profile?: MockProfileName | MockProfile;
  /** Models loaded at start, by name (`opal-tiny`, `opal-small`, `llama-3-8b`, …); default none. */
  readonly models?: readonly string[];
  /** Faults to inject; default none. Change them at run time with `setFaults`. */
  readonly faults?: FaultConfig;
  /** Slots, queue, prompt, chunk and retention limits; each documents its default. */
  readonly limits?: MockDeviceLimits;
  /** Device id reported by GetInfo; default a random id. */
  readonly deviceId?: string;
  /** Clock in ms since the Unix epoch (leases); default `Date.now`. */
  readonly now?: () => number;
  /**
   * Called by the `dropConnectionAfterChunks` fault to drop every connection (`serveMockDevice`
   * restarts its server); without it, the stream just fails with UNAVAILABLE.
   */
  readonly onConnectionDrop?: () => Promise<void>;
}

/**
 * The simulated device: a {@link PrefillDriver} with run-time fault control and counters. `close()`
 * ends every call in progress with UNAVAILABLE `SHUTTING_DOWN` (their timers with them) and frees
 * the retained caches; later calls fail the same way.
 */
export interface MockDevice extends PrefillDriver {
  readonly profile: MockProfile;
  /**
   * Replaces the fault configuration (effective for the next calls); INVALID_ARGUMENT naming the
   * field when `faults` is not valid, leaving the current faults in place.
   */
  setFaults(faults: FaultConfig): void;
  /** Counters since start; `faultsInjected` counts under every fault configuration set so far. */
  readonly stats: {
    readonly prefillsStarted: number;
    readonly prefillsCompleted: number;
    readonly faultsInjected: number;
    readonly retainedKvBytes: number;
    readonly activePrefills: number;
  };
}
