/**
 * The `opal` command's building blocks, usable from code: the end-to-end demo and its report.
 *
 * @packageDocumentation
 */

export { formatDemoReport } from "./format-demo-report";
export type { DemoOptions, DemoReport } from "./run-demo";
export { DEFAULT_DEMO_PROMPT, runDemo } from "./run-demo";
