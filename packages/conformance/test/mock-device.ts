import { readFileSync } from "node:fs";
import { parseKnownFailing } from "@opal/conformance";
import { type MockServer, serveMockDevice } from "@opal/mock";

/** Tokens of the two tenants the self-test's mock serves. */
export const TOKEN_A = "conformance-token-a";
export const TOKEN_B = "conformance-token-b";

/** The mock's known departures from the protocol (see mock-known-failing.txt). */
export const MOCK_KNOWN_FAILING_FILE = new URL("./mock-known-failing.txt", import.meta.url)
  .pathname;
export const MOCK_KNOWN_FAILING = parseKnownFailing(readFileSync(MOCK_KNOWN_FAILING_FILE, "utf8"));

/**
 * The mock with two tenants, instant numerics, small limits (so saturation tests stay fast) and
 * the shared-memory data plane.
 */
export function serveConformanceMock(): Promise<MockServer> {
  return serveMockDevice(
    { profile: "instant", limits: { maxConcurrentPrefills: 2, maxQueuedPrefills: 2 } },
    {
      auth: { tokens: { [TOKEN_A]: "tenant-a", [TOKEN_B]: "tenant-b" } },
      shutdownGraceMs: 0,
      sharedMemory: true,
    },
  );
}
