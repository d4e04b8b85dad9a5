import { Metadata } from "@grpc/grpc-js";
import { MAX_TIMER_MS } from "@opal/core";
import { describe, expect, it } from "vitest";
import { openServiceContext, type SurfaceCall } from "./open-service-context";

/** A call that is never cancelled, with `deadline`. */
function callWith(deadline: Date | number): SurfaceCall {
  return {
    cancelled: false,
    getPeer: () => "ipv4:127.0.0.1:1",
    getDeadline: () => deadline,
    getAuthContext: () => ({}),
    metadata: new Metadata(),
    on: () => undefined,
    removeListener: () => undefined,
  };
}

describe("openServiceContext", () => {
  it("arms no deadline timer for a deadline beyond MAX_TIMER_MS (it would fire at once)", async () => {
    const open = openServiceContext(callWith(Date.now() + MAX_TIMER_MS + 60_000), "Probe");
    try {
      await new Promise((resolve) => setTimeout(resolve, 30));
      expect(open.context.signal.aborted).toBe(false);
    } finally {
      open.dispose();
    }
  });
});
