import { Code, isCode, isReason, OpalError, type Reason } from "@opal/core";
import type { HealthCondition } from "@opal/driver";

/** An injected error for one RPC: with probability `rate`, fail with `code` and `reason`. */
export interface ErrorFault {
  /** Probability in [0, 1]. */
  readonly rate: number;
  /** gRPC code name or number; default UNAVAILABLE. */
  readonly code?: number | keyof typeof Code;
  /** One of the protocol's reasons (docs/protocol/errors.md); default DEVICE_FAULT. */
  readonly reason?: Reason;
}

/** A health condition the mock reports (names and severities: docs/protocol/telemetry.md). */
export interface ConditionFault {
  /** UPPER_SNAKE_CASE, e.g. `DEVICE_FAULT`, `THERMAL_THROTTLE`. */
  readonly name: string;
  readonly severity: HealthCondition["severity"];
  /** For humans; default "injected by the mock's fault configuration". */
  readonly message?: string;
}

/**
 * Faults of the mock device, all deterministic for a given `seed`. Every field is optional; an
 * empty object injects nothing. docs/guides/mock.md lists what a client sees for each.
 */
export interface FaultConfig {
  /** Seed of the fault PRNG, a whole number; default 1. */
  readonly seed?: number;
  /**
   * Errors by RPC name, raised before the call does anything: `GetInfo`, `GetCapabilities`, `Probe`,
   * `ListModels`, `LoadModel`, `UnloadModel`, `Prefill`, `FetchKv`, `ReleaseKv`, `WatchTelemetry`.
   */
  readonly errors?: Readonly<Record<string, ErrorFault>>;
  /** Added latency before every RPC, in ms; default 0. */
  readonly latencyMs?: number;
  /** Uniform jitter added to `latencyMs`, in ms (0..jitterMs); default 0. */
  readonly jitterMs?: number;
  /** Abort prefill streams with UNAVAILABLE after this many chunks (0 = off). */
  readonly abortAfterChunks?: number;
  /** Probability that a prefill stream is aborted (with `abortAfterChunks`); default 1. */
  readonly abortRate?: number;
  /** Corrupt one byte of the chunk with this 1-based index of each prefill (its CRC stays the original; 0 = off). */
  readonly corruptChunk?: number;
  /** Probability that a prefill gets the corrupt chunk; default 1. */
  readonly corruptRate?: number;
  /** Stall prefill streams for `stallMs` after this many chunks (0 = off). */
  readonly stallAfterChunks?: number;
  /** Duration of a stall, in ms; default 60,000 (a stalled producer, until the caller's deadline). */
  readonly stallMs?: number;
  /**
   * Drop the connection after this many chunks of a prefill (0 = off): a served mock closes every
   * connection and listens again on the same port; in process, the stream fails with UNAVAILABLE.
   */
  readonly dropConnectionAfterChunks?: number;
  /** Probability that a prefill drops the connection (with `dropConnectionAfterChunks`); default 1. */
  readonly dropRate?: number;
  /** Power cap in watts (> 0): throughput scales by cap / active power while the cap is below it. */
  readonly powerCapWatts?: number;
  /**
   * Health conditions reported in every telemetry snapshot. A `critical` one also makes the device
   * not serving (ID-10): Probe and new prefills fail with UNAVAILABLE `DEVICE_FAULT` (`SHUTTING_DOWN`
   * when that is the condition).
   */
  readonly conditions?: readonly ConditionFault[];
}

/** The RPC names `FaultConfig.errors` accepts: the device service's methods. */
const MOCK_RPC_NAMES = [
  "GetInfo",
  "GetCapabilities",
  "Probe",
  "ListModels",
  "LoadModel",
  "UnloadModel",
  "Prefill",
  "FetchKv",
  "ReleaseKv",
  "WatchTelemetry",
] as const;

type Check = (value: unknown) => string | undefined;

const wholeNumber: Check = (v) =>
  Number.isSafeInteger(v) && (v as number) >= 0 ? undefined : "a whole number >= 0";
const durationMs: Check = (v) =>
  Number.isFinite(v) && (v as number) >= 0 ? undefined : "a number of ms >= 0";
const probability: Check = (v) =>
  typeof v === "number" && v >= 0 && v <= 1 ? undefined : "in [0, 1]";

/** How each field of a {@link FaultConfig} is checked (errors and conditions have their own). */
const FIELDS: Readonly<Record<string, Check>> = {
  seed: (v) => (Number.isSafeInteger(v) ? undefined : "a whole number"),
  latencyMs: durationMs,
  jitterMs: durationMs,
  abortAfterChunks: wholeNumber,
  abortRate: probability,
  corruptChunk: wholeNumber,
  corruptRate: probability,
  stallAfterChunks: wholeNumber,
  stallMs: durationMs,
  dropConnectionAfterChunks: wholeNumber,
  dropRate: probability,
  powerCapWatts: (v) => (Number.isFinite(v) && (v as number) > 0 ? undefined : "a number > 0"),
};

const UPPER_SNAKE_CASE = /^[A-Z][A-Z0-9_]*$/;

/**
 * Checks that `value` is a {@link FaultConfig}: only its fields, each in range, RPC names of the
 * device service, known status codes, UPPER_SNAKE_CASE reasons and condition names.
 * Throws INVALID_ARGUMENT naming the field, what it expects and what it got
 * (`faults.abortRate must be in [0, 1] (got 2)`), so a typo never leaves a fault silently off.
 */
export function assertFaultConfig(value: unknown): asserts value is FaultConfig {
  const config = mapping(value, "faults", "a mapping");
  for (const [key, field] of Object.entries(config)) {
    if (field === undefined) continue;
    if (key === "errors") assertErrors(field);
    else if (key === "conditions") assertConditions(field);
    else if (Object.hasOwn(FIELDS, key)) {
      const expected = FIELDS[key]!(field);
      if (expected) throw invalidGot(`faults.${key} must be ${expected}`, field);
    } else {
      throw invalid(
        `faults.${key} is not a fault (expected one of ${[...Object.keys(FIELDS), "errors", "conditions"].join(", ")})`,
      );
    }
  }
}

/** The status code of an error fault: a code name or number other than OK; default UNAVAILABLE. */
export function resolveCode(code: number | string | undefined, field: string): Code {
  if (code === undefined) return Code.UNAVAILABLE;
  const value =
    typeof code === "number"
      ? code
      : Object.hasOwn(Code, code)
        ? Code[code as keyof typeof Code]
        : undefined;
  if (!isCode(value) || value === Code.OK) {
    throw invalid(`${field}: unknown status code ${JSON.stringify(code)}`);
  }
  return value;
}

function assertErrors(value: unknown): void {
  const errors = mapping(value, "faults.errors", "a mapping of RPC name to { rate, code, reason }");
  for (const [rpc, fault] of Object.entries(errors)) {
    const at = `faults.errors.${rpc}`;
    if (!(MOCK_RPC_NAMES as readonly string[]).includes(rpc)) {
      throw invalid(`${at}: unknown RPC (expected one of ${MOCK_RPC_NAMES.join(", ")})`);
    }
    const f = mapping(fault, at, "a mapping { rate, code, reason }");
    onlyKeys(f, at, ["rate", "code", "reason"]);
    const expected = probability(f.rate);
    if (expected) throw invalidGot(`${at}.rate must be ${expected}`, f.rate);
    resolveCode(f.code as number | string | undefined, `${at}.code`);
    if (
      f.reason !== undefined &&
      !(typeof f.reason === "string" && UPPER_SNAKE_CASE.test(f.reason))
    )
      throw invalidGot(`${at}.reason must be UPPER_SNAKE_CASE`, f.reason);
    if (f.reason !== undefined && !isReason(f.reason))
      throw invalidGot(
        `${at}.reason must be a protocol reason (docs/protocol/errors.md)`,
        f.reason,
      );
  }
}

function assertConditions(value: unknown): void {
  if (!Array.isArray(value)) throw invalidGot("faults.conditions must be a list", value);
  value.forEach((c: unknown, i) => {
    const at = `faults.conditions[${i}]`;
    const condition = mapping(c, at, "a mapping { name, severity, message }");
    onlyKeys(condition, at, ["name", "severity", "message"]);
    if (!(typeof condition.name === "string" && UPPER_SNAKE_CASE.test(condition.name)))
      throw invalidGot(`${at}.name must be UPPER_SNAKE_CASE`, condition.name);
    if (!["info", "warning", "critical"].includes(condition.severity as string))
      throw invalidGot(`${at}.severity must be info, warning or critical`, condition.severity);
    if (condition.message !== undefined && typeof condition.message !== "string")
      throw invalidGot(`${at}.message must be text`, condition.message);
  });
}

function mapping(value: unknown, at: string, expected: string): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw invalidGot(`${at} must be ${expected}`, value);
  return value as Record<string, unknown>;
}

function onlyKeys(value: Record<string, unknown>, at: string, keys: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!keys.includes(key))
      throw invalid(`${at}.${key} is not a field (expected ${keys.join(", ")})`);
  }
}

function invalid(message: string): OpalError {
  return new OpalError(Code.INVALID_ARGUMENT, message);
}

/** `message (got <value as JSON>)`. */
function invalidGot(message: string, got: unknown): OpalError {
  return invalid(`${message} (got ${JSON.stringify(got) ?? String(got)})`);
}
