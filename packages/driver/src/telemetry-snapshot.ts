/** A named health condition, e.g. POWER_CAPPED. */
export interface HealthCondition {
  /** UPPER_SNAKE_CASE. */
  readonly name: string;
  readonly severity: "info" | "warning" | "critical";
  readonly message: string;
}

/** A full snapshot of a device's state (never a delta). */
export interface TelemetrySnapshot {
  readonly timestampUnixMs: number;
  /** Fraction of compute busy over the last interval, 0..1. */
  readonly utilization: number;
  readonly queueDepth: number;
  readonly activePrefills: number;
  readonly retainedKvBytes: number;
  readonly powerWatts: number;
  /** Energy since the device started, in joules. */
  readonly energyJoulesTotal: number;
  readonly temperatureCelsius: number;
  readonly conditions: readonly HealthCondition[];
}
