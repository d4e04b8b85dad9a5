/**
 * Private test kit shared by OPAL's tests: the driver contract suite, second-language peers and
 * helpers. Only tests import it.
 *
 * @packageDocumentation
 */

export type { CollectedPrefill } from "./collect-prefill";
export { collectPrefill } from "./collect-prefill";
export type { ContractSubject } from "./contract-subject";
export { describeDriverContract } from "./driver-contract";
export { expectOpalError } from "./expect-opal-error";
export type { HealthClient, HealthClientOptions, HealthStatus } from "./health-client";
export { createHealthClient } from "./health-client";
export type { OpenPush, PushOutcomeOnWire, PushRequest } from "./open-push";
export { openPush } from "./open-push";
export type { PythonPeer } from "./python-peer";
export { createPythonPeer, PROTO_ROOT, PYTHON } from "./python-peer";
export type {
  ReflectionClient,
  ReflectionClientOptions,
  ReflectionVersion,
} from "./reflection-client";
export { createReflectionClient, loadReflectedDefinitions } from "./reflection-client";
export type { StartListeningProcessOptions } from "./start-listening-process";
export { startListeningProcess } from "./start-listening-process";
export type { TestCertificateOptions, TestCertificates } from "./test-certificates";
export { createTestCertificates } from "./test-certificates";
export type { PushMessages } from "./to-push-messages";
export { toPushMessages } from "./to-push-messages";
