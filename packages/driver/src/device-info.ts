/**
 * The OPAL protocol version (semver) this release implements: what a driver reports as
 * {@link DeviceInfo.protocolVersion} and what `@opal/protocol` checks a device's against.
 */
export const PROTOCOL_VERSION = "1.0.0";

/** Identity of a device (`GetInfo`). Display fields never drive behaviour: capabilities do. */
export interface DeviceInfo {
  /** Semantic version of the protocol implemented, e.g. {@link PROTOCOL_VERSION}. */
  readonly protocolVersion: string;
  /** Vendor name, for display only. */
  readonly vendor: string;
  /** Product name, for display only. */
  readonly product: string;
  readonly firmwareVersion: string;
  readonly driverVersion: string;
  /** Stable id of this device instance. */
  readonly deviceId: string;
  /** Named protocol extensions implemented, e.g. "opal.dev/data-plane-shm". */
  readonly extensions: readonly string[];
}

/** Readiness reported by `probe`: an error thrown by `probe` means unhealthy. */
export type ProbeState = "ready" | "initializing";
