import { readdirSync, watch } from "node:fs";
import { describe, expect, it } from "vitest";
import { type ChaosFigures, formatChaosFigures, runChaos } from "./chaos-run";

// The full 1,000-prefill run is `packages/client/bench/chaos.bench.ts` (`npm run bench chaos`).
const PREFILLS = 150;

/** The promises of a chaos run of `prefills` prefills, whatever carried the bytes. */
function expectEveryPromiseKept(figures: ChaosFigures, prefills: number): void {
  // Faults really happened: errors, aborts and corrupt chunks at ~10% each, plus one kill.
  expect(figures.deviceRestarts).toBe(1);
  expect(figures.faultsInjected).toBeGreaterThan(prefills * 0.15);
  // Every well-formed request ended one of two ways, and the SDK hid most faults.
  const wellFormed = figures.prefills - figures.badInputsTried;
  expect(figures.completed + figures.failedClearly).toBe(wellFormed);
  expect(figures.completed).toBeGreaterThan(wellFormed * 0.9);
  expect(figures.unclearFailures).toBe(0);
  // No cache with wrong bytes, no hostile request served, nothing left behind.
  expect(figures.wrongBytesDelivered).toBe(0);
  expect(figures.badInputsAccepted).toBe(0);
  expect(figures.bytesLost).toBe(0);
  expect(figures.activePrefillsLeft).toBe(0);
}

describe("chaos: prefills through a pool of three faulty mock devices", () => {
  it(`ends each of ${PREFILLS} prefills with a verified cache or a clear error, delivers no wrong bytes and frees every retained byte`, async () => {
    const figures = await runChaos({ prefills: PREFILLS, concurrency: 12 });
    console.log(formatChaosFigures(figures));
    expectEveryPromiseKept(figures, PREFILLS);
    expect(figures.retries + figures.resumes).toBeGreaterThan(0);
    expect(figures.badInputsTried).toBeGreaterThan(0);
    // Memory stays flat: well under the size of the caches moved (150 × ~40 KiB, twice over).
    expect(figures.heapGrowthMiB).toBeLessThan(16);
  }, 60_000);

  it.skipIf(process.platform !== "linux")(
    "keeps every promise through the shared-memory data plane too, and leaves no region behind",
    async () => {
      const ours = (name: string | null) => name?.startsWith(`opal-${process.pid}-`) ?? false;
      const created = new Set<string>();
      const watcher = watch("/dev/shm", (_event, name) => {
        if (ours(name)) created.add(name!);
      });
      const figures = await runChaos({
        prefills: 100,
        concurrency: 12,
        sharedMemory: true,
      }).finally(() => watcher.close());
      // The pool's clients really used regions (concurrent prefills, each its own).
      expect(created.size).toBeGreaterThan(1);
      console.log(formatChaosFigures(figures));
      expectEveryPromiseKept(figures, 100);
      expect(readdirSync("/dev/shm").filter(ours)).toEqual([]);
    },
    60_000,
  );
});
