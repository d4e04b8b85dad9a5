import type { ConformanceReport } from "./conformance-report";

/**
 * The report as pretty-printed JSON (the `--json` file): device info, capabilities, results,
 * `verdict` (`conformant`, `incomplete`, `not-conformant`), `incomplete` (why it cannot certify),
 * `problems` and `ok`.
 */
export function toJsonReport(report: ConformanceReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}
