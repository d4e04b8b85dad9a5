import { setMaxListeners } from "node:events";
import { Code, OpalError } from "@opal/core";
import type { ConformanceOptions } from "./conformance-options";
import type { ConformanceResult } from "./conformance-report";
import {
  type ConformanceTest,
  FAILURE_REASON,
  formatTag,
  NOT_APPLICABLE_REASON,
  SKIP_REASON,
} from "./conformance-test";
import type { RunContext } from "./create-run-context";
import type { WireClient } from "./wire-client";
import { describeWireStatus, toWireStatus } from "./wire-status";

/**
 * Runs one test under its time limit and maps the outcome to a result: skipped when the device
 * lacks its feature or model, failed with the reason it gives, passed otherwise. Closes every
 * client the test opened.
 */
export async function runConformanceTest(
  test: ConformanceTest,
  run: RunContext,
  knownFailing: boolean,
  modelProblem: string,
  options: ConformanceOptions,
): Promise<ConformanceResult> {
  const started = Date.now();
  const notes: string[] = [];
  const result = (status: ConformanceResult["status"], message?: string): ConformanceResult => ({
    id: test.id,
    title: test.title,
    tag: formatTag(test.tag),
    spec: test.spec,
    status,
    ...(message ? { message } : {}),
    notes,
    durationMs: Date.now() - started,
    knownFailing,
  });
  if (test.tag.kind === "optional" && !run.features.has(test.tag.feature)) {
    const why =
      test.tag.feature === "tenants" || test.tag.feature === "auth"
        ? run.tenantsReason || "needs --token"
        : `the device does not declare ${test.tag.feature}`;
    return result("skipped", why);
  }
  if (test.needs?.includes("model") && !run.model) return result("skipped", modelProblem);
  if (test.needs?.includes("conformance-weights") && !run.model?.conformanceWeights) {
    return result(
      "skipped",
      run.model
        ? `no reference for model ${run.model.modelId}: the device did not load the conformance model, and neither a checkpoint of its weights (--checkpoint, --config: checkpoint) nor conformanceWeights was given, so its KV cannot be checked`
        : modelProblem,
    );
  }
  const controller = new AbortController();
  // Saturation tests pass the test's signal to dozens of calls.
  setMaxListeners(0, controller.signal);
  const opened: WireClient[] = [];
  const timeoutMs = test.timeoutMs ?? options.testTimeoutMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    const context = run.make(controller.signal, notes, opened);
    await Promise.race([
      test.run(context),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          controller.abort();
          reject(
            new OpalError(Code.DEADLINE_EXCEEDED, `timed out after ${timeoutMs} ms`, {
              reason: FAILURE_REASON,
            }),
          );
        }, timeoutMs);
      }),
    ]);
    return result("passed");
  } catch (error) {
    if (error instanceof OpalError && error.reason === SKIP_REASON)
      return result("skipped", error.rawMessage);
    if (error instanceof OpalError && error.reason === NOT_APPLICABLE_REASON)
      return result("passed", `not applicable: ${error.rawMessage}`);
    if (error instanceof OpalError && error.reason === FAILURE_REASON)
      return result("failed", error.rawMessage);
    const status = toWireStatus(error);
    return result(
      "failed",
      status
        ? `unexpected device error: ${describeWireStatus(status)}`
        : `unexpected error: ${(error as Error)?.message ?? String(error)}`,
    );
  } finally {
    clearTimeout(timer);
    controller.abort();
    for (const client of opened) client.close();
  }
}
