import { Code, OpalError } from "@opal/core";
import { type opal, PROTOCOL_VERSION } from "@opal/protocol";
import { createConformanceModel } from "./conformance-model";
import type { ConformanceOptions } from "./conformance-options";
import type { ConformanceReport, ConformanceResult } from "./conformance-report";
import type { ConformanceModelRef } from "./conformance-test";
import { createRunContext } from "./create-run-context";
import { loadConformanceModel } from "./load-conformance-model";
import { runConformanceTest } from "./run-conformance-test";
import { toConformanceTests } from "./suites/index";
import { toCapabilitiesJson, toInfoJson } from "./to-capabilities-json";
import { createWireClient, type WireClientOptions } from "./wire-client";
import { describeWireStatus, toWireStatus } from "./wire-status";

/** Version of this suite. */
export const SUITE_VERSION = "0.1.0";

/**
 * Runs the conformance suite against the device at `options.target`, test by test, sequentially,
 * and resolves with the report (it rejects only for invalid options). The device is seen only
 * through the wire. The suite uploads the conformance model when the device accepts uploads and
 * unloads it at the end.
 */
export async function runConformance(options: ConformanceOptions): Promise<ConformanceReport> {
  const started = Date.now();
  const all = options.tests ?? toConformanceTests();
  const ids = new Set(all.map((t) => t.id));
  if (ids.size !== all.length) throw new OpalError(Code.INVALID_ARGUMENT, "duplicate test ids");
  const known = new Set(options.knownFailing ?? []);
  const problems: string[] = [];
  for (const id of known) {
    if (!ids.has(id))
      problems.push(
        `known-failing list names ${JSON.stringify(id)}, which is not a test id (stale entry?)`,
      );
  }
  const selected = all.filter(
    (t) => (!options.focus || options.focus.test(t.id)) && !options.skip?.test(t.id),
  );
  const base: WireClientOptions = {
    ...(options.token ? { token: options.token } : {}),
    ...(options.tls ? { tls: options.tls } : {}),
  };
  const a = createWireClient(options.target, base);
  const b = options.tokenB
    ? createWireClient(options.target, { ...base, token: options.tokenB })
    : undefined;
  const results: ConformanceResult[] = [];
  let info: opal.device.v1.GetInfoResponse | undefined;
  let capabilities: opal.device.v1.ICapabilities | undefined;
  let model: ConformanceModelRef | undefined;
  try {
    try {
      info = await a.unary("getInfo", {}, { timeoutMs: 10_000 });
      capabilities =
        (await a.unary("getCapabilities", {}, { timeoutMs: 10_000 })).capabilities ?? {};
    } catch (error) {
      const status = toWireStatus(error);
      problems.push(
        `cannot read the device's GetInfo/GetCapabilities: ${status ? describeWireStatus(status) : (error as Error).message}`,
      );
    }
    if (info && capabilities) {
      const conformanceModel = createConformanceModel();
      const shared = new Map<string, unknown>();
      // Only runs that need a model upload one (a focused run of identity tests stays light).
      const needsModel = selected.some(
        (t) => (t.needs?.length ?? 0) > 0 || t.id.startsWith("models."),
      );
      const setup = needsModel
        ? await loadConformanceModel(a, capabilities, conformanceModel, options, shared)
        : { problem: "no selected test needs a model" };
      model = setup.model;
      const run = createRunContext(
        options,
        a,
        b,
        base,
        info,
        capabilities,
        model,
        conformanceModel,
        shared,
      );
      for (const test of selected) {
        const result = await runConformanceTest(
          test,
          run,
          known.has(test.id),
          setup.problem,
          options,
        );
        results.push(result);
        options.onResult?.(result);
      }
      if (model?.uploaded) {
        await a
          .unary("unloadModel", { modelId: model.modelId }, { timeoutMs: 10_000 })
          .catch(() => {});
      }
    }
  } finally {
    a.close();
    b?.close();
  }
  const failed = results.filter((r) => r.status === "failed" && !r.knownFailing).length;
  const knownFailing = results.filter((r) => r.status === "failed" && r.knownFailing).length;
  const unexpected = results.filter((r) => r.status === "passed" && r.knownFailing);
  for (const r of unexpected) {
    problems.push(`${r.id} is listed as known-failing but passed: remove it from the list`);
  }
  return {
    suiteVersion: SUITE_VERSION,
    protocolVersion: PROTOCOL_VERSION,
    target: options.target,
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    ...(info ? { info: toInfoJson(info) } : {}),
    ...(capabilities ? { capabilities: toCapabilitiesJson(capabilities) } : {}),
    ...(model
      ? {
          model: {
            modelId: model.modelId,
            conformanceWeights: model.conformanceWeights,
            uploaded: model.uploaded,
          },
        }
      : {}),
    results,
    summary: {
      total: results.length,
      passed: results.filter((r) => r.status === "passed").length,
      failed,
      skipped: results.filter((r) => r.status === "skipped").length,
      knownFailing,
      unexpectedPasses: unexpected.length,
    },
    problems,
    ok: failed === 0 && problems.length === 0,
  };
}
