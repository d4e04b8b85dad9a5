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

/**
 * What a run says about the device: `conformant` only when every Core test of the suite ran and
 * passed (and nothing else went wrong); `incomplete` when none failed unexpectedly but a Core test
 * was skipped, failed as listed, or was not selected (`focus`/`skip`), so the device cannot be
 * certified; `not-conformant` when a test failed unexpectedly or the run had problems.
 */
export type ConformanceVerdict = "conformant" | "incomplete" | "not-conformant";

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
    /** True when KV was checked against a reference: the conformance weights, or `checkpoint`. */
    readonly conformanceWeights: boolean;
    readonly uploaded: boolean;
    /** The Hugging Face checkpoint folder the reference was computed from, when one was named. */
    readonly checkpoint?: string;
  };
  readonly results: readonly ConformanceResult[];
  readonly summary: ConformanceSummary;
  /** Run-level problems: setup failures, stale or unknown known-failing entries. */
  readonly problems: readonly string[];
  /** The verdict; see {@link ConformanceVerdict}. */
  readonly verdict: ConformanceVerdict;
  /** Why the verdict is not `conformant` short of a failure: each skipped, listed or unselected Core test. */
  readonly incomplete: readonly string[];
  /**
   * True when the run went as expected: every selected test passed, failed as listed or was an
   * Optional test skipped, no selected Core test was skipped, and `problems` is empty. A focused
   * run can be `ok` without being `conformant`.
   */
  readonly ok: boolean;
}
