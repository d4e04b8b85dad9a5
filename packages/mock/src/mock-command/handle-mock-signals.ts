import { constants } from "node:os";
import type { MockServer } from "../serve-mock-device";
import { readFaultConfig } from "../serve-mock-device";

/**
 * Installs `opal-mock`'s signal handlers: the first SIGTERM or SIGINT shuts `mock` down gracefully
 * (running calls get 5 s) and exits 0 (1 if the shutdown fails); a second one exits at once with
 * 128 + the signal's number. SIGHUP reloads the fault file `faultsPath`, if any: a bad file is
 * reported and the faults in force stay.
 */
export function handleMockSignals(
  name: string,
  mock: MockServer,
  faultsPath: string | undefined,
): void {
  let stopping = false;
  const stop = (signal: "SIGTERM" | "SIGINT") => {
    if (stopping) {
      console.error(`${name}: ${signal} again, exiting without waiting for running calls`);
      process.exit(128 + constants.signals[signal]);
    }
    stopping = true;
    console.log(`${name}: ${signal}, shutting down`);
    mock.close({ graceMs: 5_000 }).then(
      () => process.exit(0),
      (error) => {
        console.error(`${name}: shutdown failed: ${error}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGHUP", () => {
    if (!faultsPath) return;
    // A bad file is reported and the faults in force stay: a reload never stops the device.
    readFaultConfig(faultsPath)
      .then((faults) => {
        mock.device.setFaults(faults);
        console.log(`${name}: reloaded faults from ${faultsPath}`);
      })
      .catch((error: Error) =>
        console.error(`${name}: ${error.message}; keeping the previous faults`),
      );
  });
}
