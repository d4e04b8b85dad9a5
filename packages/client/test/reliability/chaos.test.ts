import { readdirSync, watch } from "node:fs";
import { describe, expect, it } from "vitest";
import { formatChaosFigures, runChaos } from "./chaos-run";

// The full 1,000-prefill run is `packages/client/bench/chaos.bench.ts` (`npm run bench chaos`).
const PREFILLS = 150;

describe("chaos: prefills through a pool of three faulty mock devices", () => {
  it(`ends each of ${PREFILLS} prefills with a verified cache or a clear error, delivers no wrong bytes and frees every retained byte`, async () => {
    const figures = await runChaos({ prefills: PREFILLS, concurrency: 12 });
    console.log(formatChaosFigures(figures));

    // Faults really happened: errors, aborts and corrupt chunks at ~10% each, plus one kill.
    expect(figures.deviceRestarts).toBe(1);
    expect(figures.faultsInjected).toBeGreaterThan(PREFILLS * 0.15);
    expect(figures.retries + figures.resumes).toBeGreaterThan(0);
    // Every well-formed request ended one of two ways, and the SDK hid most faults.
    const wellFormed = figures.prefills - figures.badInputsTried;
    expect(figures.completed + figures.failedClearly).toBe(wellFormed);
    expect(figures.completed).toBeGreaterThan(wellFormed * 0.9);
    expect(figures.unclearFailures).toBe(0);
    // The promises: no cache with wrong bytes, no hostile request served, nothing left behind.
    expect(figures.wrongBytesDelivered).toBe(0);
    expect(figures.badInputsTried).toBeGreaterThan(0);
    expect(figures.badInputsAccepted).toBe(0);
    expect(figures.bytesLost).toBe(0);
    expect(figures.activePrefillsLeft).toBe(0);
    // Memory stays flat: well under the size of the caches moved (150 × ~40 KiB, twice over).
    expect(figures.heapGrowthMiB).toBeLessThan(16);
  }, 60_000);

  it.skipIf(process.platform !== "linux")(
    "keeps every promise through the shared-memory data plane too, and leaves no region behind",
    async () => {
      const created = new Set<string>();
      const watcher = watch("/dev/shm", (_event, name) => {
        if (name?.startsWith(`opal-${process.pid}-`)) created.add(name);
      });
      const figures = await runChaos({
        prefills: 100,
        concurrency: 12,
        sharedMemory: true,
      }).finally(() => watcher.close());
      // The pool's clients really used regions (concurrent prefills, each its own).
      expect(created.size).toBeGreaterThan(1);
      console.log(formatChaosFigures(figures));
      expect(figures.deviceRestarts).toBe(1);
      expect(figures.faultsInjected).toBeGreaterThan(100 * 0.15);
      const wellFormed = figures.prefills - figures.badInputsTried;
      expect(figures.completed + figures.failedClearly).toBe(wellFormed);
      expect(figures.completed).toBeGreaterThan(wellFormed * 0.9);
      expect(figures.unclearFailures).toBe(0);
      expect(figures.wrongBytesDelivered).toBe(0);
      expect(figures.badInputsAccepted).toBe(0);
      expect(figures.bytesLost).toBe(0);
      expect(figures.activePrefillsLeft).toBe(0);
      const regions = readdirSync("/dev/shm").filter((n) => n.startsWith(`opal-${process.pid}-`));
      expect(regions).toEqual([]);
    },
    60_000,
  );
});
