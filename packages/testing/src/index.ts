/**
 * Private test kit shared by OPAL's tests: second-language peers, fixtures and the driver contract
 * suite. Only tests import it.
 *
 * @packageDocumentation
 */

export type { PythonPeer } from "./python-peer";
export { createPythonPeer, PROTO_ROOT, PYTHON } from "./python-peer";
