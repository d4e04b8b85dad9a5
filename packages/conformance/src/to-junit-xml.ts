import type { ConformanceReport, ConformanceResult } from "./conformance-report";

/** A Core test that did not run: the run cannot certify the device. */
function coreSkipped(r: ConformanceResult): boolean {
  return r.tag === "Core" && r.status === "skipped";
}

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
 * for skipped Optional tests, `<failure type="incomplete">` for a skipped Core test (the device
 * cannot be certified without it), and the requirement ids as properties. A last `<testsuite
 * name="verdict">` holds one test case, `conformance verdict`, with the verdict as a property and
 * a `<failure>` listing why unless the device is conformant.
 */
export function toJunitXml(report: ConformanceReport): string {
  const suites = new Map<string, (typeof report.results)[number][]>();
  for (const r of report.results) {
    const suite = r.id.split(".")[0] ?? r.id;
    suites.set(suite, [...(suites.get(suite) ?? []), r]);
  }
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>'];
  const failing = (r: ConformanceResult) =>
    (r.status === "failed" && !r.knownFailing) || coreSkipped(r);
  const skipping = (r: ConformanceResult) =>
    (r.status === "skipped" && !coreSkipped(r)) || (r.status === "failed" && r.knownFailing);
  const verdictFails = report.verdict === "conformant" ? 0 : 1;
  const failed = report.results.filter(failing).length + verdictFails;
  const skippedAll = report.results.filter(skipping).length;
  out.push(
    `<testsuites name="opal-conformance" tests="${report.results.length + 1}" failures="${failed}" errors="0" skipped="${skippedAll}" time="${(report.durationMs / 1000).toFixed(3)}">`,
  );
  for (const [suite, results] of suites) {
    const f = results.filter(failing).length;
    const s = results.filter(skipping).length;
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
      } else if (coreSkipped(r)) {
        const why = `Core test skipped, the device cannot be certified: ${r.message ?? ""}`;
        out.push(
          `      <failure message="${escapeXml(why)}" type="incomplete">${escapeXml(`${r.title}\n${why}`)}</failure>`,
        );
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
  const why = [...report.incomplete, ...report.problems].join("\n");
  out.push(
    `  <testsuite name="verdict" tests="1" failures="${verdictFails}" errors="0" skipped="0" time="0.000">`,
    `    <testcase classname="verdict" name="conformance verdict" time="0.000">`,
    `      <properties><property name="verdict" value="${report.verdict}"/></properties>`,
    ...(verdictFails
      ? [
          `      <failure message="${escapeXml(`verdict: ${report.verdict}`)}" type="${report.verdict}">${escapeXml(why)}</failure>`,
        ]
      : []),
    "    </testcase>",
    "  </testsuite>",
  );
  out.push("</testsuites>");
  return `${out.join("\n")}\n`;
}
