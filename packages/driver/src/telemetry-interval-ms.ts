/** Longest and shortest snapshot interval of a telemetry watch, in ms (telemetry.md). */
const MAX_INTERVAL_MS = 60_000;
const MIN_INTERVAL_MS = 50;

/**
 * The snapshot interval of a WatchTelemetry request, in ms: unset, 0 or NaN means 1,000, and values
 * are clamped to 50..60,000 (telemetry.md), so no timer is asked for an interval it cannot hold
 * (above 2^31 - 1 ms, Node fires at once: a flood of snapshots).
 */
export function telemetryIntervalMs(requested: number | undefined): number {
  return Math.min(MAX_INTERVAL_MS, Math.max(MIN_INTERVAL_MS, requested || 1000));
}
