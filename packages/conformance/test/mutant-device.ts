import { type ConformanceReport, type ConformanceResult, runConformance } from "@opal/conformance";
import { sleep } from "@opal/core";
import type { PrefillDriver } from "@opal/driver";
import { createMockDevice, type MockDevice } from "@opal/mock";
import { createDeviceServer } from "@opal/server";
import { TOKEN_A, TOKEN_B } from "./mock-device";

/** Builds the driver a mutant serves from a fresh mock device. */
export type Mutation = (mock: MockDevice) => PrefillDriver;

/**
 * A driver that answers every call as `inner` does, except the methods in `overrides`. Inner
 * methods are bound, so overrides may call them through `inner`.
 */
export function overrideDriver(
  inner: PrefillDriver,
  overrides: Partial<Omit<PrefillDriver, "driverApiVersion">>,
): PrefillDriver {
  return {
    driverApiVersion: inner.driverApiVersion,
    ...(inner.queuesPrefills ? { queuesPrefills: true } : {}),
    getInfo: inner.getInfo.bind(inner),
    getCapabilities: inner.getCapabilities.bind(inner),
    probe: inner.probe.bind(inner),
    listModels: inner.listModels.bind(inner),
    loadModel: inner.loadModel.bind(inner),
    unloadModel: inner.unloadModel.bind(inner),
    prefill: inner.prefill.bind(inner),
    fetchKv: inner.fetchKv.bind(inner),
    releaseKv: inner.releaseKv.bind(inner),
    watchTelemetry: inner.watchTelemetry.bind(inner),
    close: inner.close.bind(inner),
    ...overrides,
  };
}

/**
 * `mock` ignoring cancellation: a cancelled prefill keeps its stream (and so its slot) for `holdMs`
 * more before it is closed.
 */
export function holdCancelledPrefills(mock: MockDevice, holdMs: number): PrefillDriver {
  return overrideDriver(mock, {
    prefill: async function* (r, o) {
      const events = mock.prefill(r, { ...o, signal: undefined })[Symbol.asyncIterator]();
      let finished = false;
      try {
        for (let next = await events.next(); !next.done; next = await events.next())
          yield next.value;
        finished = true;
      } finally {
        if (!finished) void sleep(holdMs).then(() => events.return?.());
      }
    },
  });
}

/** Limits of every mutant: those of the self-test's mock (small, so saturation tests stay fast). */
const LIMITS = { maxConcurrentPrefills: 2, maxQueuedPrefills: 2 };

/**
 * Serves a mutant like the self-test's mock (instant profile, two tenants, small limits) on a free
 * loopback port, passes its address to `use`, and shuts it down afterwards.
 */
export async function withMutantServer<T>(
  mutation: Mutation,
  use: (address: string) => Promise<T>,
): Promise<T> {
  const mock = createMockDevice({ profile: "instant", limits: LIMITS });
  const server = await createDeviceServer(mutation(mock), {
    auth: { tokens: { [TOKEN_A]: "tenant-a", [TOKEN_B]: "tenant-b" } },
    shutdownGraceMs: 0,
  });
  try {
    return await use(server.address);
  } finally {
    await server.shutdown({ graceMs: 0 });
    await mock.close();
  }
}

/** Runs the tests whose id matches `focus` against `address` with both tenants' tokens. */
export function runFocused(address: string, focus: RegExp): Promise<ConformanceReport> {
  return runConformance({
    target: address,
    token: TOKEN_A,
    tokenB: TOKEN_B,
    focus,
    prefillTimeoutMs: 5_000,
    testTimeoutMs: 15_000,
  });
}

/** Serves the mutant and runs the tests matching `focus` against it. */
export function runAgainstMutant(mutation: Mutation, focus: RegExp): Promise<ConformanceReport> {
  return withMutantServer(mutation, (address) => runFocused(address, focus));
}

/** The result of test `id`; throws when it did not run. */
export function resultOf(report: ConformanceReport, id: string): ConformanceResult {
  const result = report.results.find((r) => r.id === id);
  if (!result) throw new Error(`${id} did not run`);
  return result;
}

/** `id: status message` per test, for assertion messages. */
export function summarise(report: ConformanceReport): string {
  return report.results.map((r) => `${r.id}: ${r.status} ${r.message ?? ""}`).join("\n");
}
