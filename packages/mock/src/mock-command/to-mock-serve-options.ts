import type { DeviceServerOptions } from "@opal/server";
import { InvalidArgumentError } from "commander";
import type { MockDeviceLimits } from "../mock-capabilities";
import type { MockDeviceOptions } from "../mock-device";
import { opticalMockProfile } from "../mock-profile";
import { readFaultConfig } from "../serve-mock-device";
import type { MockFlags } from "./add-mock-options";
import { assertHostPort, parseTokenPair } from "./mock-flag-parsers";

/** The arguments of `serveMockDevice` that `opal-mock`'s flags ask for. */
interface MockServeOptions {
  readonly device: MockDeviceOptions & { readonly limits: MockDeviceLimits };
  readonly server: DeviceServerOptions;
}

/**
 * Checks the flags and turns them into `serveMockDevice`'s options, reading the fault file.
 * Throws `InvalidArgumentError` for optical-only flags on another profile, a malformed `--token`
 * or `--push-target`; rejects as `readFaultConfig` for a bad fault file.
 */
export async function toMockServeOptions(o: MockFlags): Promise<MockServeOptions> {
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
  return {
    device: {
      profile:
        o.profile === "optical"
          ? opticalMockProfile({
              ...(o.errorBound !== undefined ? { maxRelError: o.errorBound } : {}),
              ...(o.noiseSeed !== undefined ? { seed: o.noiseSeed } : {}),
            })
          : o.profile,
      models: o.model,
      ...(o.faults ? { faults: await readFaultConfig(o.faults) } : {}),
      limits,
    },
    server: {
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
        ...(o.ratePerTenant !== undefined ? { requestsPerSecondPerTenant: o.ratePerTenant } : {}),
      },
    },
  };
}
