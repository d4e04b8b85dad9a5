import { assertTimerMs, Code, invalidField, OpalError, Reason } from "@opal/core";
import type { ServerLimits } from "./server-options";

/** Enforces per-tenant rate and concurrency limits. */
export interface TenantLimiter {
  /** Counts one request against the tenant's rate; throws RESOURCE_EXHAUSTED RATE_LIMITED with RetryInfo. */
  admitRequest(tenant: string): void;
  /**
   * Takes one of the tenant's concurrent stream slots; throws RESOURCE_EXHAUSTED
   * TENANT_QUOTA_EXCEEDED. Call the returned function exactly once when the stream ends.
   */
  acquireStream(tenant: string): () => void;
}

/**
 * Creates a limiter; with no limits set, it admits everything. An invalid setting of `limits` (a
 * concurrency limit, timeout or upload bound that is not a positive integer, a negative or
 * non-finite rate, a burst below one request) throws INVALID_ARGUMENT INVALID_FIELD naming it.
 */
export function createTenantLimiter(
  limits: ServerLimits = {},
  now: () => number = Date.now,
): TenantLimiter {
  assertLimits(limits);
  const rate = limits.requestsPerSecondPerTenant;
  // A burst of at least one request, so that a rate below one per second still admits calls.
  const burst = limits.burstRequests ?? Math.max(1, rate ?? 0);
  const buckets = new Map<string, { tokens: number; atMs: number }>();
  const active = new Map<string, number>();
  return {
    admitRequest(tenant) {
      if (!rate) return;
      const t = now();
      const bucket = buckets.get(tenant) ?? { tokens: burst, atMs: t };
      bucket.tokens = Math.min(burst, bucket.tokens + ((t - bucket.atMs) / 1000) * rate);
      bucket.atMs = t;
      buckets.set(tenant, bucket);
      if (bucket.tokens < 1) {
        const retryDelayMs = Math.ceil(((1 - bucket.tokens) / rate) * 1000);
        throw new OpalError(
          Code.RESOURCE_EXHAUSTED,
          `tenant exceeded ${rate} requests per second`,
          {
            reason: Reason.RATE_LIMITED,
            retryDelayMs,
          },
        );
      }
      bucket.tokens -= 1;
    },
    acquireStream(tenant) {
      const max = limits.maxConcurrentPrefillsPerTenant;
      const current = active.get(tenant) ?? 0;
      if (max !== undefined && current >= max) {
        throw new OpalError(
          Code.RESOURCE_EXHAUSTED,
          `tenant already runs ${current} of its ${max} concurrent prefills`,
          { reason: Reason.TENANT_QUOTA_EXCEEDED, retryDelayMs: 100 },
        );
      }
      active.set(tenant, current + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (active.get(tenant) ?? 1) - 1;
        if (left === 0) active.delete(tenant);
        else active.set(tenant, left);
      };
    },
  };
}

function assertLimits(limits: ServerLimits): void {
  const { maxConcurrentPrefillsPerTenant: max, requestsPerSecondPerTenant: rate } = limits;
  if (max !== undefined && !(Number.isSafeInteger(max) && max >= 1)) {
    throw invalidField(
      "limits.maxConcurrentPrefillsPerTenant",
      `expected an integer >= 1, got ${max}`,
    );
  }
  if (rate !== undefined && rate !== 0 && !(rate > 0 && Number.isFinite(rate))) {
    throw invalidField(
      "limits.requestsPerSecondPerTenant",
      `expected a number > 0 (or 0: unlimited), got ${rate}`,
    );
  }
  for (const name of ["maxConcurrentUploads", "maxUploadBytesInFlight"] as const) {
    const value = limits[name];
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 1)) {
      throw invalidField(`limits.${name}`, `expected an integer >= 1, got ${value}`);
    }
  }
  // Timers: setTimeout fires at once for a delay above MAX_TIMER_MS.
  for (const name of ["streamStallTimeoutMs", "uploadIdleTimeoutMs"] as const) {
    assertTimerMs(`limits.${name}`, limits[name], 1);
  }
  const burst = limits.burstRequests;
  if (burst !== undefined && !(burst >= 1 && Number.isFinite(burst))) {
    throw invalidField("limits.burstRequests", `expected a number >= 1, got ${burst}`);
  }
}
