import { Code, OpalError, Reason } from "@opal/core";
import type { HealthCondition } from "@opal/driver";
import { assertFaultConfig, type FaultConfig, resolveCode } from "./fault-config";

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

/**
 * Creates an injector for `config`; INVALID_ARGUMENT naming the field when `config` is not a valid
 * {@link FaultConfig} (unknown fields or RPC names, values out of range, unknown codes).
 * `options.onInjected` is called for every fault applied, for a count that outlives the injector
 * (a device replaced its faults while a stream drawn under the old ones still runs).
 */
export function createFaultInjector(
  config: FaultConfig = {},
  options: { readonly onInjected?: () => void } = {},
): FaultInjector {
  assertFaultConfig(config);
  const conditions: HealthCondition[] = (config.conditions ?? []).map((c) => ({
    name: c.name,
    severity: c.severity,
    message: c.message ?? "injected by the mock's fault configuration",
  }));
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
  const inject = () => {
    injected++;
    options.onInjected?.();
  };
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
    count: inject,
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
      inject();
      const code = resolveCode(fault.code, `faults.errors.${rpc}.code`);
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
