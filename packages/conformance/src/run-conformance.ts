import { Code, OpalError } from "@opal/core";
import { type opal, PROTOCOL_VERSION } from "@opal/protocol";
import { createReferenceModel, loadHfCheckpoint, type ReferenceModel } from "@opal/reference";
import { type ConformanceModel, createConformanceModel } from "./conformance-model";
import type { ConformanceOptions } from "./conformance-options";
import type {
  ConformanceReport,
  ConformanceResult,
  ConformanceVerdict,
} from "./conformance-report";
import type { ConformanceModelRef, ConformanceTest } from "./conformance-test";
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
 * unloads it at the end. With `options.checkpoint` the reference is computed from that checkpoint
 * instead, for the configured `modelId` (an unreadable checkpoint rejects, INVALID_ARGUMENT or
 * NOT_FOUND).
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
  if (options.checkpoint && !options.modelId)
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      "checkpoint needs the id of the model the device serves it as (--config: model)",
    );
  const checkpoint = options.checkpoint
    ? createReferenceModel(await loadHfCheckpoint(options.checkpoint))
    : undefined;
  const selected = all.filter(
    (t) => (!options.focus || options.focus.test(t.id)) && !options.skip?.test(t.id),
  );
  const run = await runOnDevice({ options, selected, known, checkpoint, problems });
  return {
    suiteVersion: SUITE_VERSION,
    protocolVersion: PROTOCOL_VERSION,
    target: options.target,
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    ...toReportBody(all, run, options, problems),
  };
}

/** What {@link runOnDevice} needs: the run's options and what `runConformance` derived from them. */
interface DeviceRunPlan {
  readonly options: ConformanceOptions;
  /** The tests to run, in order. */
  readonly selected: readonly ConformanceTest[];
  /** Ids of the known-failing list. */
  readonly known: ReadonlySet<string>;
  /** The reference computed from `options.checkpoint`, if given. */
  readonly checkpoint: ReferenceModel | undefined;
  /** The run's problems so far; the device run appends its own. */
  readonly problems: string[];
}

/** What the device said about itself, the model tested with, and each selected test's result. */
interface DeviceRun {
  readonly info: opal.device.v1.GetInfoResponse | undefined;
  readonly capabilities: opal.device.v1.ICapabilities | undefined;
  readonly model: ConformanceModelRef | undefined;
  readonly results: readonly ConformanceResult[];
}

/**
 * Connects to the device as tenant A (and B with `tokenB`), reads its identity, then runs the
 * selected tests with the model set up for them (uploaded when needed, unloaded at the end);
 * closes its connections before it resolves. A device whose GetInfo/GetCapabilities cannot be read
 * runs no test: that is added to `plan.problems`.
 */
async function runOnDevice(plan: DeviceRunPlan): Promise<DeviceRun> {
  const { options, problems } = plan;
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
      const conformanceModel: ConformanceModel = plan.checkpoint
        ? { ...createConformanceModel(), reference: plan.checkpoint }
        : createConformanceModel();
      const shared = new Map<string, unknown>();
      // Only runs that need a model upload one (a focused run of identity tests stays light).
      const needsModel = plan.selected.some(
        (t) => (t.needs?.length ?? 0) > 0 || t.id.startsWith("models."),
      );
      const setup = needsModel
        ? await loadConformanceModel(a, capabilities, conformanceModel, options, shared)
        : { problem: "no selected test needs a model" };
      model = setup.model;
      if (model && plan.checkpoint) {
        const mismatch = checkpointMismatch(model.info, plan.checkpoint.config);
        if (mismatch)
          problems.push(
            `the checkpoint ${options.checkpoint} does not describe model ${model.modelId}: ${mismatch}`,
          );
      }
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
      for (const test of plan.selected) {
        const result = await runConformanceTest(
          test,
          run,
          plan.known.has(test.id),
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
  return { info, capabilities, model, results };
}

/**
 * The report's findings: the device and model, the results and their summary, and the verdict.
 * Appends to `problems` each known-failing test that passed.
 */
function toReportBody(
  all: readonly ConformanceTest[],
  run: DeviceRun,
  options: ConformanceOptions,
  problems: string[],
): Omit<
  ConformanceReport,
  "suiteVersion" | "protocolVersion" | "target" | "startedAt" | "durationMs"
> {
  const { info, capabilities, model, results } = run;
  const failed = results.filter((r) => r.status === "failed" && !r.knownFailing).length;
  const knownFailing = results.filter((r) => r.status === "failed" && r.knownFailing).length;
  const unexpected = results.filter((r) => r.status === "passed" && r.knownFailing);
  for (const r of unexpected) {
    problems.push(`${r.id} is listed as known-failing but passed: remove it from the list`);
  }
  const incomplete = toIncomplete(all, results, info !== undefined && capabilities !== undefined);
  const coreSkipped = results.some((r) => r.tag === "Core" && r.status === "skipped");
  const verdict: ConformanceVerdict =
    failed > 0 || problems.length > 0
      ? "not-conformant"
      : incomplete.length > 0
        ? "incomplete"
        : "conformant";
  return {
    ...(info ? { info: toInfoJson(info) } : {}),
    ...(capabilities ? { capabilities: toCapabilitiesJson(capabilities) } : {}),
    ...(model
      ? {
          model: {
            modelId: model.modelId,
            conformanceWeights: model.conformanceWeights,
            ...(options.checkpoint ? { checkpoint: options.checkpoint } : {}),
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
    verdict,
    incomplete,
    ok: failed === 0 && problems.length === 0 && !coreSkipped,
  };
}

/** How the device's model and a checkpoint's config differ, or "" when their shapes agree. */
function checkpointMismatch(
  info: opal.device.v1.IModelInfo,
  config: ReturnType<typeof createReferenceModel>["config"],
): string {
  const device = `${info.numLayers} layers, ${info.mha?.numKvHeads}x${info.mha?.headDim} KV heads, vocab ${info.vocabSize}`;
  const named = `${config.numHiddenLayers} layers, ${config.numKeyValueHeads}x${config.headDim} KV heads, vocab ${config.vocabSize}`;
  return device === named ? "" : `the device lists ${device}, the checkpoint has ${named}`;
}

/**
 * Why a run cannot certify the device although nothing failed unexpectedly: each Core test that
 * was skipped (with its reason), failed as the known-failing list says, or was not selected.
 */
function toIncomplete(
  all: readonly ConformanceTest[],
  results: readonly ConformanceResult[],
  ran: boolean,
): string[] {
  if (!ran) return ["the suite could not read the device's GetInfo/GetCapabilities"];
  const byId = new Map(results.map((r) => [r.id, r]));
  const reasons: string[] = [];
  const unselected: string[] = [];
  for (const test of all) {
    if (test.tag.kind !== "core") continue;
    const r = byId.get(test.id);
    if (!r) unselected.push(test.id);
    else if (r.status === "skipped")
      reasons.push(`Core test ${r.id} was skipped: ${r.message ?? "no reason given"}`);
    else if (r.status === "failed")
      reasons.push(`Core test ${r.id} failed (listed as known-failing): ${r.message ?? ""}`);
  }
  if (unselected.length > 0)
    reasons.push(
      `${unselected.length} Core test${unselected.length === 1 ? " was" : "s were"} not selected (--focus/--skip): ${unselected.slice(0, 5).join(", ")}${unselected.length > 5 ? ", …" : ""}`,
    );
  return reasons;
}
