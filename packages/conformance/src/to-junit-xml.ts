import type { ConformanceReport } from "./conformance-report";

/** True for characters XML 1.0 allows (tab, newline, carriage return, and U+0020 up). */
function isXmlChar(ch: string): boolean {
  const c = ch.charCodeAt(0);
  return c === 0x09 || c === 0x0a || c === 0x0d || c >= 0x20;
}

function escapeXml(text: string): string {
  // XML 1.0 forbids most control characters even escaped: drop them.
  return [...text]
    .filter(isXmlChar)
    .join("")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

/**
 * The report as JUnit XML: one `<testsuite>` per suite prefix (`identity`, `stream`, …), one
 * `<testcase>` per test with `classname` = suite and `name` = `id [tag]`, `<failure>` for failed
 * tests (known failures are reported as `<skipped>` with the reason "known failing"), `<skipped>`
 * for skipped ones, and the requirement ids as properties.
 */
export function toJunitXml(report: ConformanceReport): string {
  const suites = new Map<string, (typeof report.results)[number][]>();
  for (const r of report.results) {
    const suite = r.id.split(".")[0] ?? r.id;
    suites.set(suite, [...(suites.get(suite) ?? []), r]);
  }
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>'];
  const failed = report.results.filter((r) => r.status === "failed" && !r.knownFailing).length;
  const skippedAll = report.results.filter(
    (r) => r.status === "skipped" || (r.status === "failed" && r.knownFailing),
  ).length;
  out.push(
    `<testsuites name="opal-conformance" tests="${report.results.length}" failures="${failed}" errors="0" skipped="${skippedAll}" time="${(report.durationMs / 1000).toFixed(3)}">`,
  );
  for (const [suite, results] of suites) {
    const f = results.filter((r) => r.status === "failed" && !r.knownFailing).length;
    const s = results.filter(
      (r) => r.status === "skipped" || (r.status === "failed" && r.knownFailing),
    ).length;
    const time = results.reduce((t, r) => t + r.durationMs, 0) / 1000;
    out.push(
      `  <testsuite name="${escapeXml(suite)}" tests="${results.length}" failures="${f}" errors="0" skipped="${s}" time="${time.toFixed(3)}">`,
    );
    for (const r of results) {
      out.push(
        `    <testcase classname="${escapeXml(suite)}" name="${escapeXml(`${r.id} [${r.tag}]`)}" time="${(r.durationMs / 1000).toFixed(3)}">`,
      );
      out.push(
        `      <properties><property name="spec" value="${escapeXml(r.spec.join(" "))}"/><property name="tag" value="${escapeXml(r.tag)}"/></properties>`,
      );
      if (r.status === "failed" && !r.knownFailing) {
        out.push(
          `      <failure message="${escapeXml(r.message ?? "failed")}" type="${escapeXml(r.spec.join(" "))}">${escapeXml(`${r.title}\n${r.message ?? ""}`)}</failure>`,
        );
      } else if (r.status === "failed") {
        out.push(`      <skipped message="${escapeXml(`known failing: ${r.message ?? ""}`)}"/>`);
      } else if (r.status === "skipped") {
        out.push(`      <skipped message="${escapeXml(r.message ?? "skipped")}"/>`);
      }
      if (r.status === "passed" && r.knownFailing) {
        out.push(
          `      <failure message="listed as known-failing but passed: remove it from the list" type="known-failing"/>`,
        );
      }
      out.push("    </testcase>");
    }
    out.push("  </testsuite>");
  }
  out.push("</testsuites>");
  return `${out.join("\n")}\n`;
}
