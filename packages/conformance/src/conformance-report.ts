/** Outcome of one test. */
export type ConformanceStatus = "passed" | "failed" | "skipped";

/** One test's result. */
export interface ConformanceResult {
  readonly id: string;
  readonly title: string;
  /** `Core` or `Optional(feature)`. */
  readonly tag: string;
  /** Requirement ids checked. */
  readonly spec: readonly string[];
  readonly status: ConformanceStatus;
  /** Why it failed or was skipped. */
  readonly message?: string;
  /** What the test measured (extra lines). */
  readonly notes: readonly string[];
  readonly durationMs: number;
  /** Listed in the known-failing list. */
  readonly knownFailing: boolean;
}

/** Counts of a run. */
export interface ConformanceSummary {
  readonly total: number;
  readonly passed: number;
  /** Failed and not known to fail: these make the run fail. */
  readonly failed: number;
  readonly skipped: number;
  /** Failed as the known-failing list says. */
  readonly knownFailing: number;
  /** Listed as known-failing but passed: these make the run fail (the list went stale). */
  readonly unexpectedPasses: number;
}

/** The result of a conformance run, as `runConformance` returns it and `--json` writes it. */
export interface ConformanceReport {
  readonly suiteVersion: string;
  /** Protocol version the suite checks against. */
  readonly protocolVersion: string;
  readonly target: string;
  /** ISO 8601 start time. */
  readonly startedAt: string;
  readonly durationMs: number;
  /** `GetInfo` of the device (JSON form), when it answered. */
  readonly info?: Readonly<Record<string, unknown>>;
  /** `GetCapabilities` of the device (JSON form, enum names), when it answered. */
  readonly capabilities?: Readonly<Record<string, unknown>>;
  /** The model tests prefilled with. */
  readonly model?: {
    readonly modelId: string;
    readonly conformanceWeights: boolean;
    readonly uploaded: boolean;
  };
  readonly results: readonly ConformanceResult[];
  readonly summary: ConformanceSummary;
  /** Run-level problems: setup failures, stale or unknown known-failing entries. */
  readonly problems: readonly string[];
  /** True when every selected, non-skipped test passed or failed as listed, and `problems` is empty. */
  readonly ok: boolean;
}
