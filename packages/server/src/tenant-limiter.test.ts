import { Code, type OpalError } from "@opal/core";
import { describe, expect, it } from "vitest";
import { createTenantLimiter } from "./tenant-limiter";

/** Whether the limiter admits one request of tenant "a" now; the refusal otherwise. */
function admit(limiter: ReturnType<typeof createTenantLimiter>): true | OpalError {
  try {
    limiter.admitRequest("a");
    return true;
  } catch (error) {
    return error as OpalError;
  }
}

describe("createTenantLimiter", () => {
  it("admits one request every 2 s at 0.5 requests per second, and says when", () => {
    let nowMs = 0;
    const limiter = createTenantLimiter({ requestsPerSecondPerTenant: 0.5 }, () => nowMs);
    expect(admit(limiter)).toBe(true);
    const refused = admit(limiter) as OpalError;
    expect({ code: refused.code, reason: refused.reason }).toEqual({
      code: Code.RESOURCE_EXHAUSTED,
      reason: "RATE_LIMITED",
    });
    expect(refused.retryDelayMs).toBe(2_000);
    nowMs += refused.retryDelayMs!;
    expect(admit(limiter)).toBe(true);
  });

  it.each([
    [{ maxConcurrentPrefillsPerTenant: 0 }, "limits.maxConcurrentPrefillsPerTenant"],
    [{ maxConcurrentPrefillsPerTenant: 1.5 }, "limits.maxConcurrentPrefillsPerTenant"],
    [{ requestsPerSecondPerTenant: -1 }, "limits.requestsPerSecondPerTenant"],
    [{ requestsPerSecondPerTenant: 10, burstRequests: 0.5 }, "limits.burstRequests"],
    [{ streamStallTimeoutMs: 0 }, "limits.streamStallTimeoutMs"],
    [{ maxConcurrentUploads: 0 }, "limits.maxConcurrentUploads"],
    [{ maxUploadBytesInFlight: 1.5 }, "limits.maxUploadBytesInFlight"],
    [{ uploadIdleTimeoutMs: Number.POSITIVE_INFINITY }, "limits.uploadIdleTimeoutMs"],
  ])("rejects the setting %o, naming %s", (limits, field) => {
    let caught: unknown;
    try {
      createTenantLimiter(limits);
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "INVALID_FIELD" });
    expect((caught as OpalError).fieldViolations[0]?.field).toBe(field);
  });
});
