/**
 * The OPAL device conformance suite: a black-box runner that checks a device endpoint against the
 * normative protocol (docs/protocol), test by test, each tagged Core or Optional(feature) and citing
 * the requirement ids it checks; console, JUnit and JSON reports; a known-failing list that cannot
 * go stale; and the `opal-conformance` executable. It sees the device only through the wire.
 *
 * @packageDocumentation
 */
// biome-ignore-all assist/source/organizeImports: exports are listed user-facing first, not sorted

// Running the suite
export { runConformance, SUITE_VERSION } from "./run-conformance";
export { toConformanceModelId } from "./load-conformance-model";
export { createConformanceCommand } from "./create-conformance-command";
export type { ConformanceOptions } from "./conformance-options";
export type {
  ConformanceReport,
  ConformanceResult,
  ConformanceStatus,
  ConformanceSummary,
  ConformanceVerdict,
} from "./conformance-report";
export { toConformanceTests } from "./suites/index";

// Reports, configuration, known failures
export { formatConsoleReport, formatResultLine } from "./format-console-report";
export { toJunitXml } from "./to-junit-xml";
export { toJsonReport } from "./to-json-report";
export { parseKnownFailing, readKnownFailing } from "./read-known-failing";
export { readVendorConfig, toVendorConfig } from "./read-vendor-config";
export type { VendorConfig } from "./read-vendor-config";

// Writing tests
export {
  assertConformance,
  assertNoViolations,
  CORE,
  formatTag,
  optional,
  skipTest,
} from "./conformance-test";
export type {
  ConformanceContext,
  ConformanceFeature,
  ConformanceModelRef,
  ConformanceNeed,
  ConformanceTag,
  ConformanceTest,
  PrefillCallOptions,
} from "./conformance-test";

// Building blocks: the conformance model, stream and numerics checks, the push receiver
export { createConformanceModel, toWeightChunks } from "./conformance-model";
export type { ConformanceModel, ConformanceModelOptions } from "./conformance-model";
export { collectKvStream } from "./collect-kv-stream";
export type { CollectedKv, CollectKvOptions } from "./collect-kv-stream";
export type { KvRegion, StreamStart } from "./kv-stream-state";
export { compareKvWithReference } from "./compare-kv";
export type { KvComparison } from "./compare-kv";
export { computeOpalBlockHashes, computeOpalBlockHashRoot } from "./block-hash-chain";
export { createKvReceiverHost } from "./kv-receiver-host";
export type { KvReceiverHost, KvReceiverHostOptions, ReceivedPush } from "./kv-receiver-host";
export { checkStatusShape, REASON_CODES } from "./expect-status";
export { createWireClient } from "./wire-client";
export type {
  WireCallOptions,
  WireClient,
  WireClientOptions,
  WireStream,
} from "./wire-client";
export { decodeWireStatusDetails, toWireStatus } from "./wire-status";
export type { WireErrorInfo, WireStatus, WireStatusDetails } from "./wire-status";
