import { Command } from "commander";
import { mockRetentionQuotas } from "./mock-capabilities";
import { addMockOptions, type MockFlags } from "./mock-command/add-mock-options";
import { handleMockSignals } from "./mock-command/handle-mock-signals";
import { toMockServeOptions } from "./mock-command/to-mock-serve-options";
import { serveMockDevice } from "./serve-mock-device";

/**
 * The command that serves the mock device until SIGTERM or SIGINT (`opal-mock`, and `opal mock`).
 * It prints `<name> listening on <host:port>` once serving; SIGHUP reloads the fault file. The first
 * SIGTERM or SIGINT shuts down gracefully (running calls get 5 s) and exits 0; a second one during
 * that shutdown exits at once with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
 */
export function createMockCommand(name: string): Command {
  const command = new Command(name).description(
    "Serve the Iris-style mock prefill device over gRPC until SIGTERM or SIGINT (a second one exits at once).",
  );
  return addMockOptions(command)
    .showHelpAfterError()
    .action((o: MockFlags) => runMockCommand(name, o));
}

/** Serves the mock as the flags ask, prints where and with which limits, and waits for signals. */
async function runMockCommand(name: string, o: MockFlags): Promise<void> {
  const options = await toMockServeOptions(o);
  const mock = await serveMockDevice(options.device, options.server);
  console.log(
    `${name} listening on ${mock.address} (profile ${o.profile}, models ${o.model.join(", ")})`,
  );
  if (mock.server.metricsUrl) console.log(`metrics at ${mock.server.metricsUrl}`);
  console.log(
    o.pushTarget?.length
      ? `push targets: only ${o.pushTarget.join(", ")}`
      : "push targets: only the caller's own address (no --push-target list)",
  );
  const retention = mockRetentionQuotas(options.device.limits);
  console.log(
    `per tenant: ${o.maxConcurrentPerTenant ?? "unlimited"} concurrent prefills, ${o.ratePerTenant ?? "unlimited"} requests/s, ${retention.maxRetainedBytesPerTenant} retained bytes in ${retention.maxLeasesPerTenant} caches; streams not read for ${o.stallTimeoutMs} ms end`,
  );
  handleMockSignals(name, mock, o.faults);
}
