import type { ConformanceReport } from "@opal/conformance";
import { describe, expect, it } from "vitest";
import { ERROR_MUTANTS } from "./error-mutants";
import { LIFECYCLE_MUTANTS } from "./lifecycle-mutants";
import type { Mutant } from "./mutant";
import { resultOf, runFocused, summarise, withMutantServer } from "./mutant-device";
import { STREAM_MUTANTS } from "./stream-mutants";
import { TELEMETRY_MUTANTS } from "./telemetry-mutants";
import { serveWireProxy, type WireProxyHooks } from "./wire-proxy";

const ALL = [...STREAM_MUTANTS, ...LIFECYCLE_MUTANTS, ...ERROR_MUTANTS, ...TELEMETRY_MUTANTS];

const exactly = (ids: readonly string[]) =>
  new RegExp(`^(${ids.map((id) => id.replace(/[.-]/g, "\\$&")).join("|")})$`);

/** Serves `mutant` (or the clean mock, with a pass-through proxy when `proxy` is set) and runs `focus`. */
function runAgainst(
  mutant: Pick<Mutant, "mutation" | "proxy">,
  focus: RegExp,
): Promise<ConformanceReport> {
  return withMutantServer(mutant.mutation ?? ((mock) => mock), async (address) => {
    if (!mutant.proxy) return runFocused(address, focus);
    const proxy = await serveWireProxy(address, mutant.proxy());
    try {
      return await runFocused(proxy.address, focus);
    } finally {
      await proxy.close();
    }
  });
}

describe("the harness is transparent: a clean mock served the same way passes every test the mutants must fail", () => {
  const ids = [...new Set(ALL.filter((m) => m.mutation).flatMap((m) => m.fails))];
  const proxied = [...new Set(ALL.filter((m) => m.proxy).flatMap((m) => m.fails))];

  it("through createDeviceServer", async () => {
    const report = await runAgainst({}, exactly(ids));
    expect(report.results.map((r) => r.id).sort()).toEqual([...ids].sort());
    expect(report.ok, summarise(report)).toBe(true);
  }, 60_000);

  it("through the wire proxy", async () => {
    const passThrough: () => WireProxyHooks = () => ({});
    const report = await runAgainst({ proxy: passThrough }, exactly(proxied));
    expect(report.results.map((r) => r.id).sort()).toEqual([...proxied].sort());
    expect(report.ok, summarise(report)).toBe(true);
  }, 60_000);
});

describe("a device that breaks one MUST fails the conformance tests that check it", () => {
  it.each(ALL.map((m) => [m.name, m] as const))(
    "%s",
    async (_name, mutant) => {
      const report = await runAgainst(mutant, exactly(mutant.fails));
      for (const id of mutant.fails) {
        const result = resultOf(report, id);
        expect(result.status, `${id}\n${summarise(report)}`).toBe("failed");
        expect(result.message, id).toMatch(mutant.cites);
      }
      expect(report.ok).toBe(false);
    },
    30_000,
  );
});
