/** Identity of a device (`GetInfo`). Display fields never drive behaviour: capabilities do. */
export interface DeviceInfo {
  /** Semantic version of the protocol implemented, e.g. "1.0.0". */
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
