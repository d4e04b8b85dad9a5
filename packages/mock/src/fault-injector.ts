import { Code, isCode, OpalError, Reason } from "@opal/core";
import type { HealthCondition } from "@opal/driver";

/** An injected error for one RPC: with probability `rate`, fail with `code` and `reason`. */
export interface ErrorFault {
  /** Probability in [0, 1]. */
  readonly rate: number;
  /** gRPC code name or number; default UNAVAILABLE. */
  readonly code?: number | keyof typeof Code;
  /** Protocol reason; default DEVICE_FAULT. */
  readonly reason?: string;
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
  /** Seed of the fault PRNG; default 1. */
  readonly seed?: number;
  /** Errors by RPC name (`Prefill`, `FetchKv`, `GetInfo`, …), raised before the call does anything. */
  readonly errors?: Readonly<Record<string, ErrorFault>>;
  /** Added latency before every RPC, in ms; default 0. */
  readonly latencyMs?: number;
  /** Uniform jitter added to `latencyMs`, in ms (0..jitterMs); default 0. */
  readonly jitterMs?: number;
  /** Abort prefill streams with UNAVAILABLE after this many chunks (0 = off). */
  readonly abortAfterChunks?: number;
  /** Probability that a prefill stream is aborted (with `abortAfterChunks`); default 1. */
  readonly abortRate?: number;
  /** Corrupt one byte of the chunk with this 1-based index of each prefill (its CRC stays the original). */
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
  /** Power cap in watts: throughput scales by cap / active power while the cap is below it. */
  readonly powerCapWatts?: number;
  /**
   * Health conditions reported in every telemetry snapshot. A `critical` one also makes the device
   * not serving (ID-10): Probe and new prefills fail with UNAVAILABLE `DEVICE_FAULT` (`SHUTTING_DOWN`
   * when that is the condition).
   */
  readonly conditions?: readonly ConditionFault[];
}

/** Per-stream fault decisions, drawn when a stream starts. */
export interface StreamFaults {
  /** Abort after this many chunks, or undefined. */
  readonly abortAfter: number | undefined;
  /** Corrupt this 1-based chunk, or undefined. */
  readonly corruptAt: number | undefined;
  readonly stallAfter: number | undefined;
  readonly stallMs: number;
  /** Drop the connection after this many chunks, or undefined. */
  readonly dropAfter: number | undefined;
}

/** Draws fault decisions from a seeded PRNG. */
export interface FaultInjector {
  readonly config: FaultConfig;
  /** Latency to add before an RPC, in ms. */
  latencyMs(): number;
  /**
   * The injected error for `rpc`, or undefined. While a `critical` condition is configured, Probe
   * and Prefill always fail: UNAVAILABLE naming the conditions, reason `SHUTTING_DOWN` when that
   * is one of them, else `DEVICE_FAULT` (ID-10).
   */
  errorFor(rpc: string): OpalError | undefined;
  /** Decisions for one prefill stream. */
  streamFaults(): StreamFaults;
  /** Throughput factor from the power cap (1 without a cap). */
  throttle(activePowerWatts: number): number;
  /**
   * The health conditions the faults cause for a device drawing `activePowerWatts` at full load:
   * `POWER_CAPPED` (warning) while the power cap throttles it, then the configured `conditions`.
   */
  conditions(activePowerWatts: number): readonly HealthCondition[];
  /** Faults injected so far. */
  readonly injected: number;
  /** Counts a fault that was actually applied. */
  count(): void;
}

/** Creates an injector for `config` (validated: rates in [0, 1], known codes). */
export function createFaultInjector(config: FaultConfig = {}): FaultInjector {
  for (const [rpc, fault] of Object.entries(config.errors ?? {})) {
    if (!(fault.rate >= 0 && fault.rate <= 1)) {
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `faults.errors.${rpc}.rate must be in [0, 1] (got ${fault.rate})`,
      );
    }
    resolveCode(fault.code, `faults.errors.${rpc}.code`);
  }
  const conditions: HealthCondition[] = (config.conditions ?? []).map((c, i) => {
    if (!/^[A-Z][A-Z0-9_]*$/.test(c.name ?? "")) {
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `faults.conditions[${i}].name must be UPPER_SNAKE_CASE (got ${JSON.stringify(c.name)})`,
      );
    }
    if (!["info", "warning", "critical"].includes(c.severity)) {
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `faults.conditions[${i}].severity must be info, warning or critical (got ${JSON.stringify(c.severity)})`,
      );
    }
    return {
      name: c.name,
      severity: c.severity,
      message: c.message ?? "injected by the mock's fault configuration",
    };
  });
  const critical = conditions.filter((c) => c.severity === "critical").map((c) => c.name);
  let state = (config.seed ?? 1) >>> 0 || 1;
  // mulberry32: a 32-bit seeded PRNG, enough for reproducible fault schedules.
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  let injected = 0;
  const throttle = (activePowerWatts: number) => {
    const cap = config.powerCapWatts;
    if (!cap || activePowerWatts <= cap) return 1;
    return cap / activePowerWatts;
  };
  return {
    config,
    get injected() {
      return injected;
    },
    count() {
      injected++;
    },
    latencyMs() {
      const base = config.latencyMs ?? 0;
      const jitter = config.jitterMs ? random() * config.jitterMs : 0;
      return base + jitter;
    },
    errorFor(rpc) {
      if (critical.length > 0 && (rpc === "Probe" || rpc === "Prefill")) {
        // ID-10: a device draining before shutdown says so; any other critical condition is a fault.
        return new OpalError(Code.UNAVAILABLE, `device not serving: ${critical.join(", ")}`, {
          reason: critical.includes("SHUTTING_DOWN") ? Reason.SHUTTING_DOWN : Reason.DEVICE_FAULT,
        });
      }
      const fault = config.errors?.[rpc];
      if (!fault || random() >= fault.rate) return undefined;
      injected++;
      const code = resolveCode(fault.code, rpc);
      return new OpalError(code, `injected fault: ${rpc} failed`, {
        reason: fault.reason ?? Reason.DEVICE_FAULT,
        ...(code === Code.UNAVAILABLE || code === Code.RESOURCE_EXHAUSTED
          ? { retryDelayMs: 10 }
          : {}),
      });
    },
    streamFaults() {
      const pick = (n: number | undefined, rate: number | undefined) =>
        n && n > 0 && random() < (rate ?? 1) ? n : undefined;
      return {
        abortAfter: pick(config.abortAfterChunks, config.abortRate),
        corruptAt: pick(config.corruptChunk, config.corruptRate),
        stallAfter: pick(config.stallAfterChunks, 1),
        stallMs: config.stallMs ?? 60_000,
        dropAfter: pick(config.dropConnectionAfterChunks, config.dropRate),
      };
    },
    conditions(activePowerWatts) {
      const factor = throttle(activePowerWatts);
      if (factor >= 1) return conditions;
      const capped: HealthCondition = {
        name: "POWER_CAPPED",
        severity: "warning",
        message: `power capped at ${config.powerCapWatts} W, throughput x${factor.toFixed(2)}`,
      };
      return [capped, ...conditions];
    },
    throttle,
  };
}

function resolveCode(code: number | string | undefined, field: string): Code {
  if (code === undefined) return Code.UNAVAILABLE;
  const value = typeof code === "number" ? code : Code[code as keyof typeof Code];
  if (!isCode(value) || value === Code.OK) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `${field}: unknown status code ${JSON.stringify(code)}`,
    );
  }
  return value;
}
