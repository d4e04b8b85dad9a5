import { Code, OpalError } from "@opal/core";
import type { GrpcTlsOptions, opal } from "@opal/protocol";
import type { CollectedKv, CollectKvOptions } from "./collect-kv-stream";
import type { ConformanceModel } from "./conformance-model";
import type { WireCallOptions, WireClient, WireClientOptions, WireRequest } from "./wire-client";

/** Optional features a test may depend on; a test of a feature the device lacks is skipped. */
export type ConformanceFeature =
  | "model-upload"
  | "retention"
  | "resume"
  | "push"
  | "prefix-cache"
  | "decoder-prefix"
  | "seeded-sampling"
  | "shared-memory"
  | "tenants"
  | "auth";

/** `Core` tests define compliance; `Optional(feature)` tests run when the device declares it. */
export type ConformanceTag =
  | { readonly kind: "core" }
  | { readonly kind: "optional"; readonly feature: ConformanceFeature };

/** What a test needs from the run beyond its tag; unmet needs skip it with a reason. */
export type ConformanceNeed = "model" | "conformance-weights";

/** One conformance test. */
export interface ConformanceTest {
  /** Stable id, `suite.name` in kebab-case, e.g. `stream.canonical-order`. */
  readonly id: string;
  /** One line saying what is checked. */
  readonly title: string;
  readonly tag: ConformanceTag;
  /** Requirement ids of docs/protocol this test checks, e.g. `["PF-13", "PF-15"]`. */
  readonly spec: readonly string[];
  readonly needs?: readonly ConformanceNeed[];
  /** Time limit, in ms; default the run's `testTimeoutMs`. */
  readonly timeoutMs?: number;
  /** Throws to fail (see {@link assertConformance}) or to skip ({@link skipTest}). */
  run(context: ConformanceContext): Promise<void>;
}

/** The model the tests prefill with. */
export interface ConformanceModelRef {
  readonly modelId: string;
  /** As the device lists it. */
  readonly info: opal.device.v1.IModelInfo;
  /**
   * True when the suite has the model's weights (the conformance weights, or a named checkpoint), so
   * caches can be checked against the reference.
   */
  readonly conformanceWeights: boolean;
  /** True when the suite uploaded it in this run (and unloads it at the end). */
  readonly uploaded: boolean;
}

/** Options of {@link ConformanceContext.prefill}. */
export interface PrefillCallOptions extends WireCallOptions {
  /** The client to call with; default tenant A's. */
  readonly client?: WireClient;
  /** The shared-memory region the request offers (see `CollectKvOptions.region`). */
  readonly region?: CollectKvOptions["region"];
}

/** What a test receives. Connections it opens with `connect` are closed when it ends. */
export interface ConformanceContext {
  /** `host:port` of the device under test. */
  readonly target: string;
  /** Tenant A's client (`--token`). */
  readonly a: WireClient;
  /** Tenant B's client (`--token-b`), when given. */
  readonly b: WireClient | undefined;
  /** TLS settings of the run (for side-service clients), undefined for plaintext. */
  readonly tls: GrpcTlsOptions | undefined;
  /** Interface the push receiver the suite hosts binds to (and the address the device pushes to). */
  readonly receiverHost: string;
  /** Tenant A's bearer token, if any. */
  readonly token: string | undefined;
  /** Opens a new connection (tenant A's credentials unless overridden). */
  connect(options?: Partial<WireClientOptions>): WireClient;
  readonly info: opal.device.v1.GetInfoResponse;
  readonly capabilities: opal.device.v1.ICapabilities;
  /** The model to prefill with, when there is one. */
  readonly model: ConformanceModelRef | undefined;
  /** The conformance model (weights and exact reference). */
  readonly conformanceModel: ConformanceModel;
  /** Default deadline of one prefill, in ms. */
  readonly prefillTimeoutMs: number;
  /** Aborted when the test's time limit passes. */
  readonly signal: AbortSignal;
  /** Values shared between tests of one run (memoised results). */
  readonly shared: Map<string, unknown>;
  /** A request id unique to this run. */
  requestId(label: string): string;
  /** `n` deterministic prompt tokens valid for the model. */
  prompt(n: number, seed?: number): number[];
  /** A valid prefill request for the model in the default format, with `overrides` applied. */
  prefillRequest(
    overrides?: Partial<WireRequest<"prefill">>,
  ): opal.device.v1.PrefillRequest.$Properties;
  /** Runs a prefill to its end and checks its stream (see `collectKvStream`). */
  prefill(
    request: opal.device.v1.PrefillRequest.$Properties,
    options?: PrefillCallOptions,
  ): Promise<CollectedKv>;
  /** Adds a line to the test's report (what was measured). */
  note(text: string): void;
  /**
   * Skips the test with `reason`: it could not run. A skipped Core test makes the run's verdict
   * "incomplete" (no certification).
   */
  skip(reason: string): never;
  /**
   * Ends the test as passed because the rule it checks does not apply to this device (e.g. the
   * upload refusal on a device that accepts uploads); `reason` is reported as its message.
   */
  notApplicable(reason: string): never;
}

/** Reason of the `OpalError` that marks a skipped test. */
export const SKIP_REASON = "CONFORMANCE_SKIPPED";
/** Reason of the `OpalError` that marks a test whose rule does not apply to the device. */
export const NOT_APPLICABLE_REASON = "CONFORMANCE_NOT_APPLICABLE";
/** Reason of the `OpalError` that marks a failed check. */
export const FAILURE_REASON = "CONFORMANCE_VIOLATION";

declare module "@opal/core" {
  /** The runner's verdicts travel as local reasons of `OpalError`, never to or from a device. */
  interface LocalReasons {
    CONFORMANCE_SKIPPED: true;
    CONFORMANCE_NOT_APPLICABLE: true;
    CONFORMANCE_VIOLATION: true;
  }
}

/** Fails the running test with `message` unless `condition` holds. */
export function assertConformance(condition: unknown, message: string): asserts condition {
  if (!condition)
    throw new OpalError(Code.FAILED_PRECONDITION, message, { reason: FAILURE_REASON });
}

/** Fails the running test when `violations` is not empty, listing them. */
export function assertNoViolations(violations: readonly string[], context = ""): void {
  if (violations.length > 0) {
    throw new OpalError(
      Code.FAILED_PRECONDITION,
      `${context ? `${context}: ` : ""}${violations.slice(0, 5).join("; ")}${violations.length > 5 ? ` (+${violations.length - 5} more)` : ""}`,
      { reason: FAILURE_REASON },
    );
  }
}

/** Skips the running test with `reason`. */
export function skipTest(reason: string): never {
  throw new OpalError(Code.UNIMPLEMENTED, reason, { reason: SKIP_REASON });
}

/** Ends the running test as passed: its rule does not apply to the device (`reason`). */
export function notApplicable(reason: string): never {
  throw new OpalError(Code.UNIMPLEMENTED, reason, { reason: NOT_APPLICABLE_REASON });
}

/** `Core` or `Optional(feature)`. */
export function formatTag(tag: ConformanceTag): string {
  return tag.kind === "core" ? "Core" : `Optional(${tag.feature})`;
}

/** Tag constants. */
export const CORE: ConformanceTag = { kind: "core" };
/** `Optional(feature)`. */
export function optional(feature: ConformanceFeature): ConformanceTag {
  return { kind: "optional", feature };
}
