import { constants } from "node:os";
import { Command, InvalidArgumentError } from "commander";
import { type MockDeviceLimits, mockRetentionQuotas } from "./mock-capabilities";
import { toMockModelNames } from "./mock-model";
import { opticalMockProfile, toMockProfileNames } from "./mock-profile";
import { readFaultConfig, serveMockDevice } from "./serve-mock-device";

/** A commander parser of whole numbers in `min..max` (digits only), naming the flag in its error. */
const wholeNumber =
  (flag: string, min: number, max = Number.MAX_SAFE_INTEGER) =>
  (value: string) => {
    const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
    if (!(n >= min && n <= max)) {
      const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in ${min}..${max}`;
      throw new InvalidArgumentError(`${flag} must be a whole number ${range} (got ${value})`);
    }
    return n;
  };

/** A commander parser of a number strictly between 0 and 1, naming the flag in its error. */
const fraction = (flag: string) => (value: string) => {
  const n = /^\d*\.?\d+(e-?\d+)?$/i.test(value) ? Number(value) : Number.NaN;
  if (!(n > 0 && n < 1)) {
    throw new InvalidArgumentError(`${flag} must be a number between 0 and 1 (got ${value})`);
  }
  return n;
};

interface MockFlags {
  host: string;
  port: number;
  profile: string;
  model: string[];
  faults?: string;
  token?: string[];
  pushTarget?: string[];
  sharedMemory?: boolean;
  metricsPort?: number;
  metricsHost: string;
  maxConcurrent?: number;
  maxQueued?: number;
  errorBound?: number;
  noiseSeed?: number;
  maxConcurrentPerTenant?: number;
  ratePerTenant?: number;
  stallTimeoutMs: number;
  retainedBytesPerTenant?: number;
  leasesPerTenant?: number;
  maxModels?: number;
}

/**
 * The command that serves the mock device until SIGTERM or SIGINT (`opal-mock`, and `opal mock`).
 * It prints `<name> listening on <host:port>` once serving; SIGHUP reloads the fault file. The first
 * SIGTERM or SIGINT shuts down gracefully (running calls get 5 s) and exits 0; a second one during
 * that shutdown exits at once with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
 */
export function createMockCommand(name: string): Command {
  return new Command(name)
    .description(
      "Serve the Iris-style mock prefill device over gRPC until SIGTERM or SIGINT (a second one exits at once).",
    )
    .option("--host <host>", "interface to bind", "127.0.0.1")
    .option(
      "--port <port>",
      "port to bind (0 = any free port)",
      wholeNumber("--port", 0, 65_535),
      50051,
    )
    .option(
      "--profile <name>",
      `timing and power profile: ${toMockProfileNames().join(", ")}`,
      "iris-nova",
    )
    .option("--model <name...>", `models to load at start: ${toMockModelNames().join(", ")}`, [
      "opal-tiny",
    ])
    .option("--faults <file>", "fault configuration (YAML or JSON); SIGHUP reloads it")
    .option(
      "--token <token=tenant...>",
      "require bearer tokens, each mapped to a tenant (split at the last =)",
    )
    .option(
      "--push-target <host:port...>",
      "allow pushes only to these receivers (default: the caller's own address)",
    )
    .option(
      "--shared-memory",
      "offer the same-host shared-memory data plane (/dev/shm; trusted callers only)",
    )
    .option(
      "--metrics-port <port>",
      "serve Prometheus metrics on this port",
      wholeNumber("--metrics-port", 0, 65_535),
    )
    .option(
      "--metrics-host <host>",
      "interface of the metrics endpoint (it has no authentication)",
      "127.0.0.1",
    )
    .option(
      "--max-concurrent <n>",
      "prefill slots (default: 4)",
      wholeNumber("--max-concurrent", 1),
    )
    .option(
      "--max-queued <n>",
      "queue places before DEVICE_BUSY (default: 16)",
      wholeNumber("--max-queued", 0),
    )
    .option(
      "--error-bound <x>",
      "optical profile: declared error bound (absolute and relative) the noise is sized to (default: 0.02)",
      fraction("--error-bound"),
    )
    .option(
      "--noise-seed <n>",
      "optical profile: seed of the K and V noise (default: 0)",
      wholeNumber("--noise-seed", 0, 0xffff_ffff),
    )
    .option(
      "--max-concurrent-per-tenant <n>",
      "prefills and fetches one tenant may run at once (default: unlimited)",
      wholeNumber("--max-concurrent-per-tenant", 1),
    )
    .option(
      "--rate-per-tenant <n>",
      "requests per second one tenant may make (default: unlimited)",
      wholeNumber("--rate-per-tenant", 1),
    )
    .option(
      "--retained-bytes-per-tenant <n>",
      "retained KV bytes one tenant may hold (default: a quarter of the budget, 256 MiB)",
      wholeNumber("--retained-bytes-per-tenant", 0),
    )
    .option(
      "--leases-per-tenant <n>",
      "retained caches one tenant may hold (default: 1024)",
      wholeNumber("--leases-per-tenant", 0),
    )
    .option(
      "--max-models <n>",
      "models loaded at once; LoadModel of another id fails DEVICE_BUSY (default: 64)",
      wholeNumber("--max-models", 1),
    )
    .option(
      "--stall-timeout-ms <ms>",
      "end a Prefill or FetchKv stream whose caller read nothing for this long",
      wholeNumber("--stall-timeout-ms", 1),
      30_000,
    )
    .showHelpAfterError()
    .action(async (o: MockFlags) => {
      if ((o.errorBound !== undefined || o.noiseSeed !== undefined) && o.profile !== "optical") {
        throw new InvalidArgumentError(
          `--error-bound and --noise-seed apply to --profile optical (got --profile ${o.profile})`,
        );
      }
      const tokens = o.token?.length ? Object.fromEntries(o.token.map(parseTokenPair)) : undefined;
      for (const target of o.pushTarget ?? []) assertHostPort(target);
      const limits: MockDeviceLimits = {
        ...(o.maxConcurrent !== undefined ? { maxConcurrentPrefills: o.maxConcurrent } : {}),
        ...(o.maxQueued !== undefined ? { maxQueuedPrefills: o.maxQueued } : {}),
        ...(o.retainedBytesPerTenant !== undefined
          ? { maxRetainedBytesPerTenant: o.retainedBytesPerTenant }
          : {}),
        ...(o.leasesPerTenant !== undefined ? { maxLeasesPerTenant: o.leasesPerTenant } : {}),
        ...(o.maxModels !== undefined ? { maxLoadedModels: o.maxModels } : {}),
      };
      const mock = await serveMockDevice(
        {
          profile:
            o.profile === "optical"
              ? opticalMockProfile({
                  ...(o.errorBound !== undefined ? { maxRelError: o.errorBound } : {}),
                  ...(o.noiseSeed !== undefined ? { seed: o.noiseSeed } : {}),
                })
              : (o.profile as never),
          models: o.model,
          ...(o.faults ? { faults: await readFaultConfig(o.faults) } : {}),
          limits,
        },
        {
          host: o.host,
          port: o.port,
          ...(tokens ? { auth: { tokens } } : {}),
          ...(o.pushTarget?.length ? { pushTargets: o.pushTarget } : {}),
          ...(o.sharedMemory ? { sharedMemory: true } : {}),
          ...(o.metricsPort !== undefined
            ? { metricsPort: o.metricsPort, metricsHost: o.metricsHost }
            : {}),
          limits: {
            streamStallTimeoutMs: o.stallTimeoutMs,
            ...(o.maxConcurrentPerTenant !== undefined
              ? { maxConcurrentPrefillsPerTenant: o.maxConcurrentPerTenant }
              : {}),
            ...(o.ratePerTenant !== undefined
              ? { requestsPerSecondPerTenant: o.ratePerTenant }
              : {}),
          },
        },
      );
      console.log(
        `${name} listening on ${mock.address} (profile ${o.profile}, models ${o.model.join(", ")})`,
      );
      if (mock.server.metricsUrl) console.log(`metrics at ${mock.server.metricsUrl}`);
      console.log(
        o.pushTarget?.length
          ? `push targets: only ${o.pushTarget.join(", ")}`
          : "push targets: only the caller's own address (no --push-target list)",
      );
      const retention = mockRetentionQuotas(limits);
      console.log(
        `per tenant: ${o.maxConcurrentPerTenant ?? "unlimited"} concurrent prefills, ${o.ratePerTenant ?? "unlimited"} requests/s, ${retention.maxRetainedBytesPerTenant} retained bytes in ${retention.maxLeasesPerTenant} caches; streams not read for ${o.stallTimeoutMs} ms end`,
      );
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
        if (!o.faults) return;
        // A bad file is reported and the faults in force stay: a reload never stops the device.
        readFaultConfig(o.faults)
          .then((faults) => {
            mock.device.setFaults(faults);
            console.log(`${name}: reloaded faults from ${o.faults}`);
          })
          .catch((error: Error) =>
            console.error(`${name}: ${error.message}; keeping the previous faults`),
          );
      });
    });
}

/** `token=tenant`, split at the last `=`: base64 tokens end in `=` padding, tenant names do not. */
function parseTokenPair(pair: string): [string, string] {
  const at = pair.lastIndexOf("=");
  const token = pair.slice(0, Math.max(at, 0));
  const tenant = pair.slice(at + 1);
  if (at < 0 || !token || !tenant)
    throw new InvalidArgumentError(`--token expects token=tenant (got ${pair})`);
  return [token, tenant];
}

/** A push target as requests name it: `host:port` or `[v6]:port`, the port in 1..65535. */
function assertHostPort(target: string): void {
  const match = /^(?:\[[^\]\s]+\]|[^:\s[\]]+):(\d{1,5})$/.exec(target);
  const port = Number(match?.[1]);
  if (!(port >= 1 && port <= 65_535))
    throw new InvalidArgumentError(`--push-target expects host:port (got ${target})`);
}
