import type { ConformanceReport, ConformanceResult } from "./conformance-report";

function mark(result: ConformanceResult): string {
  if (result.status === "passed") return result.knownFailing ? "PASS!" : "pass ";
  if (result.status === "skipped") return "skip ";
  return result.knownFailing ? "xfail" : "FAIL ";
}

const VERDICT_LINES = {
  conformant: "CONFORMANT: every Core test ran and passed.",
  incomplete:
    "INCOMPLETE: no unexpected failure, but not every Core test ran and passed (see above): the device cannot be certified by this run.",
  "not-conformant": "NOT CONFORMANT: see the failures above.",
} as const;

/** One line per test as it finishes: `pass  identity.get-info [Core] (12 ms)`. */
export function formatResultLine(result: ConformanceResult): string {
  const why = result.message ? `\n        ${result.message}` : "";
  return `${mark(result)} ${result.id} [${result.tag}] (${result.durationMs} ms)${why}`;
}

/**
 * The readable summary of a run: the device, counts, then every failure with its requirement ids
 * and message, skipped tests grouped by reason, and the verdict.
 */
export function formatConsoleReport(report: ConformanceReport): string {
  const lines: string[] = [];
  const info = report.info as Record<string, string> | undefined;
  lines.push(
    `OPAL conformance ${report.suiteVersion} (protocol ${report.protocolVersion}) against ${report.target}`,
  );
  if (info)
    lines.push(
      `device: ${info.vendor} ${info.product} (id ${info.deviceId}, protocol ${info.protocolVersion}, firmware ${info.firmwareVersion})`,
    );
  if (report.model) {
    lines.push(
      `model: ${report.model.modelId}${report.model.checkpoint ? ` (checked against checkpoint ${report.model.checkpoint})` : report.model.conformanceWeights ? " (conformance weights)" : ""}${report.model.uploaded ? ", uploaded by the suite" : ""}`,
    );
  }
  const s = report.summary;
  lines.push(
    `${s.total} tests: ${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped, ${s.knownFailing} known failing${s.unexpectedPasses ? `, ${s.unexpectedPasses} listed as known-failing but passed` : ""} (${(report.durationMs / 1000).toFixed(1)} s)`,
  );
  const failures = report.results.filter((r) => r.status === "failed");
  if (failures.length > 0) {
    lines.push("", "Failures:");
    for (const r of failures) {
      lines.push(
        `  ${r.knownFailing ? "(known) " : ""}${r.id} [${r.tag}] ${r.spec.join(" ")}`,
        `      ${r.title}`,
        `      ${r.message ?? ""}`,
      );
    }
  }
  const skipped = report.results.filter((r) => r.status === "skipped");
  if (skipped.length > 0) {
    const byReason = new Map<string, string[]>();
    for (const r of skipped)
      byReason.set(r.message ?? "", [...(byReason.get(r.message ?? "") ?? []), r.id]);
    lines.push("", "Skipped:");
    for (const [reason, ids] of byReason) lines.push(`  ${reason}: ${ids.join(", ")}`);
  }
  if (report.problems.length > 0) {
    lines.push("", "Problems:");
    for (const p of report.problems) lines.push(`  ${p}`);
  }
  if (report.incomplete.length > 0 && report.verdict !== "not-conformant") {
    lines.push("", "Incomplete:");
    for (const reason of report.incomplete) lines.push(`  ${reason}`);
  }
  lines.push("", VERDICT_LINES[report.verdict]);
  return lines.join("\n");
}
