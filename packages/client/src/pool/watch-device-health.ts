import { Code, OpalError, sleep } from "@opal/core";
import type { PrefillDriver, TelemetrySnapshot } from "@opal/driver";

/** What a device's telemetry says about routing to it. */
export interface DeviceHealth {
  /** Prefills the device reports queued or running, for every client: its load. */
  readonly reportedLoad: number;
  /** Names of the device's `critical` health conditions; while any, it takes no new prefills. */
  readonly critical: readonly string[];
}

/**
 * Watches `driver`'s telemetry (WatchTelemetry every `intervalMs`) until `signal` aborts, calling
 * `onHealth` with each snapshot's load and critical conditions, and `onHealth(undefined)` when the
 * stream fails (the figures are then unknown, not healthy). A failed stream is reopened after
 * `intervalMs`, or the device's RetryInfo delay when longer (a limit on watchers, TM-7); a device
 * without telemetry (UNIMPLEMENTED) or that refuses it to this caller (PERMISSION_DENIED, TM-5) is
 * not asked again. Never rejects.
 */
export async function watchDeviceHealth(
  driver: PrefillDriver,
  intervalMs: number,
  signal: AbortSignal,
  onHealth: (health: DeviceHealth | undefined) => void,
): Promise<void> {
  while (!signal.aborted) {
    let waitMs = intervalMs;
    try {
      for await (const snapshot of driver.watchTelemetry({ intervalMs }, { signal })) {
        onHealth(toDeviceHealth(snapshot));
      }
    } catch (caught) {
      const error = OpalError.from(caught);
      if (error.code === Code.UNIMPLEMENTED || error.code === Code.PERMISSION_DENIED) {
        onHealth(undefined);
        return;
      }
      waitMs = Math.max(intervalMs, error.retryDelayMs ?? 0);
    }
    onHealth(undefined);
    await sleep(waitMs, signal).catch(() => {});
  }
}

function toDeviceHealth(snapshot: TelemetrySnapshot): DeviceHealth {
  return {
    reportedLoad: snapshot.queueDepth + snapshot.activePrefills,
    critical: snapshot.conditions.filter((c) => c.severity === "critical").map((c) => c.name),
  };
}
