import type { opal } from "@opal/protocol";
import type { ConformanceContext } from "./conformance-test";
import { drain, type ExpectedStatus, expectFailure } from "./expect-status";

/** Sends `request` and asserts the stream fails before any message as `expected`. */
export function expectPrefillFailure(
  ctx: ConformanceContext,
  request: opal.device.v1.PrefillRequest.$Properties,
  expected: ExpectedStatus,
  what: string,
) {
  return expectFailure(
    () =>
      drain(
        ctx.a.stream("prefill", request, { timeoutMs: ctx.prefillTimeoutMs, signal: ctx.signal }),
      ),
    expected,
    what,
  );
}
