import type { PrefillDriver } from "@opal/driver";

/** How long releasing an abandoned attempt's retained cache may take, in ms. */
const RELEASE_TIMEOUT_MS = 2_000;

/**
 * The handles of caches a device retains for a run's attempts: those nobody will use are released
 * when the run ends (the lease would free them, later).
 */
export interface RetainedCaches {
  add(kvHandle: string): void;
  /**
   * Releases every handle but `kept` on the device, in the background and best effort: the run's
   * result never waits for a device to answer a release.
   */
  releaseExcept(kept?: string): void;
}

/** An empty set of retained caches on `device`. */
export function createRetainedCaches(device: PrefillDriver): RetainedCaches {
  const retained = new Set<string>();
  return {
    add: (kvHandle) => {
      retained.add(kvHandle);
    },
    releaseExcept(kept) {
      for (const handle of retained) {
        if (handle !== kept)
          device.releaseKv(handle, { timeoutMs: RELEASE_TIMEOUT_MS }).catch(() => {});
      }
    },
  };
}
