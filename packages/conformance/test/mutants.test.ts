import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type ConformanceReport,
  formatConsoleReport,
  runConformance,
  toJsonReport,
  toJunitXml,
} from "@opal/conformance";
import type { PrefillDriver } from "@opal/driver";
import { crc32cOf, createKvDigest } from "@opal/kv";
import { createMockDevice, type MockDevice } from "@opal/mock";
import { createPresetWeights, exportHfCheckpoint } from "@opal/reference";
import { createDeviceServer } from "@opal/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_MUTANTS } from "./error-mutants";
import { GAP_MUTANTS } from "./gap-mutants";
import { LIFECYCLE_MUTANTS } from "./lifecycle-mutants";
import { type Mutant, mapPrefill } from "./mutant";
import { overrideDriver, resultOf, runFocused, summarise, withMutantServer } from "./mutant-device";
import { STREAM_MUTANTS } from "./stream-mutants";
import { TELEMETRY_MUTANTS } from "./telemetry-mutants";
import { serveWireProxy, type WireProxyHooks } from "./wire-proxy";

const ALL = [
  ...STREAM_MUTANTS,
  ...LIFECYCLE_MUTANTS,
  ...ERROR_MUTANTS,
  ...TELEMETRY_MUTANTS,
  ...GAP_MUTANTS,
];

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

describe("a stream-rule violation is reported under the test that checks it, once", () => {
  it("a bad CRC32C fails stream.canonical-order; the tests reading the same stream check their own rules", async () => {
    const crc = STREAM_MUTANTS.find((m) => m.name.includes("CRC32C over all but its last byte"))!;
    const report = await runAgainst(
      crc,
      /^(stream\.(canonical-order|digest|descriptor)|prefill\.kv-matches-reference)$/,
    );
    // As errors.md §6 writes CRCs: 0x and 8 hex digits.
    expect(resultOf(report, "stream.canonical-order").message).toMatch(
      /PF-15: chunk 1 .*CRC32C 0x[0-9a-f]{8} does not match its bytes \(0x[0-9a-f]{8}\)/,
    );
    for (const id of ["stream.digest", "stream.descriptor", "prefill.kv-matches-reference"]) {
      expect(resultOf(report, id).status, `${id}\n${summarise(report)}`).toBe("passed");
      expect(resultOf(report, id).notes.join("\n")).toMatch(
        /reported under stream\.canonical-order: PF-15/,
      );
    }
  }, 30_000);
});

/** A device that cannot load the conformance model (no uploads) and serves `opal-tiny` preloaded. */
async function withPreloadedDevice<T>(
  rewrite: (mock: MockDevice) => PrefillDriver,
  use: (address: string) => Promise<T>,
): Promise<T> {
  const mock = createMockDevice({ profile: "instant", models: ["opal-tiny"] });
  const noUploads = overrideDriver(rewrite(mock), {
    getCapabilities: async () => ({ ...(await mock.getCapabilities()), maxModelBytes: 0 }),
  });
  const server = await createDeviceServer(noUploads, { shutdownGraceMs: 0 });
  try {
    return await use(server.address);
  } finally {
    await server.shutdown({ graceMs: 0 });
    await mock.close();
  }
}

/** Made-up KV with valid CRCs and digest: what a device that computes nothing real streams. */
function garbageKv(mock: MockDevice): PrefillDriver {
  return mapPrefill(mock, async function* (events) {
    const digest = createKvDigest();
    let n = 0;
    for await (const e of events) {
      if (e.type === "chunk") {
        const data = Uint8Array.from(e.chunk.data, () => (n++ * 37 + 11) & 0x3f);
        digest.update(data);
        yield { ...e, chunk: { ...e.chunk, data, crc32c: crc32cOf(data) } };
      } else if (e.type === "completed")
        yield { ...e, stats: { ...e.stats, kvDigest: digest.digest() } };
      else yield e;
    }
  });
}

describe("a device whose KV cannot be checked is never certified; its vendor's checkpoint checks it", () => {
  const NUMERICS = /^prefill\.(kv-matches-reference|first-token|formats|head-range)$/;
  let checkpoint: string;
  beforeAll(async () => {
    checkpoint = await mkdtemp(join(tmpdir(), "opal-checkpoint-"));
    await exportHfCheckpoint(createPresetWeights("opal-tiny"), checkpoint);
  });
  afterAll(() => rm(checkpoint, { recursive: true, force: true }));

  it("garbage KV, conformance model unloadable, no checkpoint: Core tests skipped, verdict incomplete", async () => {
    const report = await withPreloadedDevice(garbageKv, (target) =>
      runConformance({ target, modelId: "opal-tiny", focus: NUMERICS }),
    );
    for (const r of report.results) {
      expect(r.status, r.id).toBe("skipped");
      expect(r.message).toMatch(/no reference for model opal-tiny: .*checkpoint/);
    }
    expect(report.ok).toBe(false);
    expect(report.verdict).toBe("incomplete");
    expect(report.incomplete.join("\n")).toMatch(
      /Core test prefill\.kv-matches-reference was skipped/,
    );
    expect(formatConsoleReport(report)).toMatch(/^INCOMPLETE: /m);
    expect(formatConsoleReport(report)).not.toMatch(/^CONFORMANT/m);
    expect(JSON.parse(toJsonReport(report)).verdict).toBe("incomplete");
    expect(toJunitXml(report)).toMatch(/type="incomplete"/);
  }, 30_000);

  it("garbage KV checked against the vendor's checkpoint fails the numerics tests", async () => {
    const report = await withPreloadedDevice(garbageKv, (target) =>
      runConformance({ target, modelId: "opal-tiny", checkpoint, focus: NUMERICS }),
    );
    expect(resultOf(report, "prefill.kv-matches-reference").status, summarise(report)).toBe(
      "failed",
    );
    expect(resultOf(report, "prefill.kv-matches-reference").message).toMatch(/PF-38|PF-36/);
    expect(resultOf(report, "prefill.formats").status).toBe("failed");
    expect(report.verdict).toBe("not-conformant");
    expect(report.model?.checkpoint).toBe(checkpoint);
  }, 30_000);

  it("the same device computing real KV passes them against its checkpoint", async () => {
    const report = await withPreloadedDevice(
      (mock) => mock,
      (target) => runConformance({ target, modelId: "opal-tiny", checkpoint, focus: NUMERICS }),
    );
    expect(report.results.map((r) => `${r.id} ${r.status}`)).toEqual(
      [...NUMERICS.source.matchAll(/[a-z-]+(?=[|)])/g)].map((m) => `prefill.${m[0]} passed`),
    );
    expect(report.ok, summarise(report)).toBe(true);
  }, 30_000);

  it("a checkpoint of another shape is a problem of the run, naming both shapes", async () => {
    const other = await mkdtemp(join(tmpdir(), "opal-checkpoint-"));
    try {
      await exportHfCheckpoint(createPresetWeights("opal-small"), other);
      const report = await withPreloadedDevice(
        (mock) => mock,
        (target) =>
          runConformance({
            target,
            modelId: "opal-tiny",
            checkpoint: other,
            focus: /^prefill\.first-token$/,
          }),
      );
      expect(report.problems.join("\n")).toMatch(
        /does not describe model opal-tiny: the device lists .*, the checkpoint has /,
      );
      expect(report.verdict).toBe("not-conformant");
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  }, 30_000);
});
