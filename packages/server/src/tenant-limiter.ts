import { Code, OpalError, Reason } from "@opal/core";
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

/** Creates a limiter; with no limits set, it admits everything. */
export function createTenantLimiter(
  limits: ServerLimits = {},
  now: () => number = Date.now,
): TenantLimiter {
  const rate = limits.requestsPerSecondPerTenant;
  const burst = limits.burstRequests ?? rate ?? 0;
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
