import { Command, InvalidArgumentError } from "commander";
import { toMockModelNames } from "./mock-model";
import { toMockProfileNames } from "./mock-profile";
import { readFaultConfig, serveMockDevice } from "./serve-mock-device";

const integer = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new InvalidArgumentError(`${name} must be a whole number >= 0 (got ${value})`);
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
  maxConcurrent?: number;
  maxQueued?: number;
}

/**
 * The command that serves the mock device until SIGTERM or SIGINT (`opal-mock`, and `opal mock`).
 * It prints `<name> listening on <host:port>` once serving; SIGHUP reloads the fault file.
 */
export function createMockCommand(name: string): Command {
  return new Command(name)
    .description("Serve the Iris-style mock prefill device over gRPC until SIGTERM or SIGINT.")
    .option("--host <host>", "interface to bind", "127.0.0.1")
    .option("--port <port>", "port to bind (0 = any free port)", integer("--port"), 50051)
    .option(
      "--profile <name>",
      `timing and power profile: ${toMockProfileNames().join(", ")}`,
      "iris-nova",
    )
    .option("--model <name...>", `models to load at start: ${toMockModelNames().join(", ")}`, [
      "opal-tiny",
    ])
    .option("--faults <file>", "fault configuration (YAML or JSON); SIGHUP reloads it")
    .option("--token <token=tenant...>", "require bearer tokens, each mapped to a tenant")
    .option(
      "--push-target <host:port...>",
      "allow pushes only to these receivers (default: any address)",
    )
    .option(
      "--shared-memory",
      "offer the same-host shared-memory data plane (/dev/shm; trusted callers only)",
    )
    .option(
      "--metrics-port <port>",
      "serve Prometheus metrics on this port",
      integer("--metrics-port"),
    )
    .option("--max-concurrent <n>", "prefill slots", integer("--max-concurrent"))
    .option("--max-queued <n>", "queue places before DEVICE_BUSY", integer("--max-queued"))
    .showHelpAfterError()
    .action(async (o: MockFlags) => {
      const tokens = o.token?.length ? Object.fromEntries(o.token.map(parseTokenPair)) : undefined;
      const mock = await serveMockDevice(
        {
          profile: o.profile as never,
          models: o.model,
          ...(o.faults ? { faults: await readFaultConfig(o.faults) } : {}),
          limits: {
            ...(o.maxConcurrent !== undefined ? { maxConcurrentPrefills: o.maxConcurrent } : {}),
            ...(o.maxQueued !== undefined ? { maxQueuedPrefills: o.maxQueued } : {}),
          },
        },
        {
          host: o.host,
          port: o.port,
          ...(tokens ? { auth: { tokens } } : {}),
          ...(o.pushTarget?.length ? { pushTargets: o.pushTarget } : {}),
          ...(o.sharedMemory ? { sharedMemory: true } : {}),
          ...(o.metricsPort !== undefined ? { metricsPort: o.metricsPort } : {}),
        },
      );
      console.log(
        `${name} listening on ${mock.address} (profile ${o.profile}, models ${o.model.join(", ")})`,
      );
      if (mock.server.metricsUrl) console.log(`metrics at ${mock.server.metricsUrl}`);
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
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
        readFaultConfig(o.faults).then(
          (faults) => {
            mock.device.setFaults(faults);
            console.log(`${name}: reloaded faults from ${o.faults}`);
          },
          (error: Error) => console.error(`${name}: ${error.message}`),
        );
      });
    });
}

function parseTokenPair(pair: string): [string, string] {
  const [token, tenant] = pair.split("=");
  if (!token || !tenant)
    throw new InvalidArgumentError(`--token expects token=tenant (got ${pair})`);
  return [token, tenant];
}
