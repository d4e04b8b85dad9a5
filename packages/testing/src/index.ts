/**
 * Private test kit shared by OPAL's tests: the driver contract suite, second-language peers and
 * helpers. Only tests import it.
 *
 * @packageDocumentation
 */

export type { CollectedPrefill, ContractSubject } from "./driver-contract";
export { collectPrefill, describeDriverContract, expectOpalError } from "./driver-contract";
export type { PythonPeer } from "./python-peer";
export { createPythonPeer, PROTO_ROOT, PYTHON } from "./python-peer";
