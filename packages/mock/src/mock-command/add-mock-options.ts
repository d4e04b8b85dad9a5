import { MAX_TIMER_MS } from "@opal/core";
import type { Command } from "commander";
import { toMockModelNames } from "../mock-model";
import { type MockProfileName, toMockProfileNames } from "../mock-profile";
import { fraction, profileName, wholeNumber } from "./mock-flag-parsers";

/** The parsed flags of `opal-mock`, as {@link addMockOptions} declares them. */
export interface MockFlags {
  host: string;
  port: number;
  profile: MockProfileName;
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

/** Declares the flags of `opal-mock` on `command` (each help text states its default). */
export function addMockOptions(command: Command): Command {
  return command
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
      profileName,
      "iris-nova" satisfies MockProfileName,
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
      wholeNumber("--stall-timeout-ms", 1, MAX_TIMER_MS),
      30_000,
    );
}
