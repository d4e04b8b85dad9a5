/**
 * Private test kit shared by OPAL's tests: the driver contract suite, second-language peers and
 * helpers. Only tests import it.
 *
 * @packageDocumentation
 */

// The health and reflection clients are @opal/protocol's; tests import them from here too.
export type {
  HealthClient,
  HealthClientOptions,
  HealthStatus,
  ReflectionClient,
  ReflectionClientOptions,
  ReflectionVersion,
} from "@opal/protocol";
export { createHealthClient, createReflectionClient } from "@opal/protocol";
export type { CollectedPrefill } from "./collect-prefill";
export { collectPrefill } from "./collect-prefill";
export type { ContractSubject } from "./contract-subject";
export { describeDriverContract } from "./driver-contract";
export { expectOpalError } from "./expect-opal-error";
export { loadReflectedDefinitions } from "./load-reflected-definitions";
export type { OpenPush, PushCall, PushOutcomeOnWire, PushRequest } from "./open-push";
export { openPush } from "./open-push";
export type { PythonPeer } from "./python-peer";
export { createPythonPeer, PROTO_ROOT, PYTHON } from "./python-peer";
export type { StartListeningProcessOptions } from "./start-listening-process";
export { startListeningProcess } from "./start-listening-process";
export type { TestCertificateOptions, TestCertificates } from "./test-certificates";
export { createTestCertificates } from "./test-certificates";
export type { PushMessages } from "./to-push-messages";
export { toPushMessages } from "./to-push-messages";
