import { createHash } from "node:crypto";
import { Code, OpalError, Reason } from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import { cacheByteLength, type KvCache } from "@opal/kv";

/** A retained cache. */
export interface RetainedKv {
  readonly tenant: string;
  readonly cache: KvCache;
  readonly digest: Uint8Array;
  readonly byteLength: number;
  /** The prefill's `completed` statistics, returned by FetchKv. */
  stats?: PrefillStats;
  leaseExpiryUnixMs: number;
}

/**
 * Tenant-scoped store of retained caches with leases and a byte budget. A leased cache is never
 * evicted (RT-4): a cache that does not fit is refused instead (RT-1).
 */
export interface RetentionStore {
  /**
   * Throws RESOURCE_EXHAUSTED `RETENTION_LIMIT_EXCEEDED` when `byteLength` more bytes do not fit in
   * the budget now: with RetryInfo (the time until enough leases end) when they would fit then,
   * without it for a cache larger than the whole budget.
   */
  assertFits(byteLength: number): void;
  /** Retains `cache` under `handle` until `leaseExpiryUnixMs`; throws as {@link assertFits}. */
  retain(handle: string, entry: Omit<RetainedKv, "byteLength">): void;
  /** The entry, or throws NOT_FOUND with KV_HANDLE_NOT_FOUND or KV_HANDLE_EXPIRED. */
  get(tenant: string, handle: string): RetainedKv;
  /** Frees the entry; false when unknown, expired or another tenant's. */
  release(tenant: string, handle: string): boolean;
  /** Frees every entry (the device is closing); their handles become NOT_FOUND. */
  clear(): void;
  /** Bytes retained now (expired entries swept first). */
  readonly byteLength: number;
}

/**
 * The key a handle is stored under: its SHA-256. Lookups never compare handle strings, so their
 * timing cannot reveal how much of a guessed handle matches a real one (SEC-15).
 */
export function handleKey(handle: string): string {
  return createHash("sha256").update(handle).digest("base64");
}

/**
 * Creates a store holding at most `maxBytes`. `now` returns ms since the Unix epoch. Entries are
 * keyed by {@link handleKey}, never by the handle itself; `get` never reorders or evicts them.
 */
export function createRetentionStore(
  maxBytes: number,
  now: () => number = Date.now,
): RetentionStore {
  /** Retained caches by handle key. */
  const entries = new Map<string, RetainedKv>();
  /** Tenants of expired handles by handle key, to tell EXPIRED from NOT_FOUND without telling other tenants. */
  const expired = new Map<string, string>();
  let bytes = 0;
  const forget = (key: string, entry: RetainedKv, wasExpired: boolean) => {
    entries.delete(key);
    bytes -= entry.byteLength;
    if (wasExpired) {
      expired.set(key, entry.tenant);
      // Remember a bounded number of expired handles, to tell EXPIRED from NOT_FOUND.
      if (expired.size > 10_000) expired.delete(expired.keys().next().value as string);
    }
  };
  const sweep = () => {
    const t = now();
    for (const [key, entry] of entries) if (entry.leaseExpiryUnixMs <= t) forget(key, entry, true);
  };
  function assertFits(byteLength: number): void {
    sweep();
    if (bytes + byteLength <= maxBytes) return;
    if (byteLength > maxBytes) {
      throw new OpalError(
        Code.RESOURCE_EXHAUSTED,
        `a cache of ${byteLength} bytes exceeds the retention budget of ${maxBytes} bytes`,
        { reason: Reason.RETENTION_LIMIT_EXCEEDED },
      );
    }
    // Leases end in expiry order: wait until enough of them have ended for the cache to fit.
    let freed = maxBytes - bytes;
    let retryDelayMs = 0;
    for (const entry of [...entries.values()].sort(
      (a, b) => a.leaseExpiryUnixMs - b.leaseExpiryUnixMs,
    )) {
      freed += entry.byteLength;
      retryDelayMs = Math.max(1, entry.leaseExpiryUnixMs - now());
      if (freed >= byteLength) break;
    }
    throw new OpalError(
      Code.RESOURCE_EXHAUSTED,
      `retaining ${byteLength} more bytes would exceed the budget of ${maxBytes} bytes (${bytes} leased)`,
      { reason: Reason.RETENTION_LIMIT_EXCEEDED, retryDelayMs },
    );
  }
  return {
    get byteLength() {
      sweep();
      return bytes;
    },
    assertFits,
    retain(handle, entry) {
      const byteLength = cacheByteLength(entry.cache.descriptor);
      assertFits(byteLength);
      entries.set(handleKey(handle), { ...entry, byteLength });
      bytes += byteLength;
    },
    get(tenant, handle) {
      sweep();
      const key = handleKey(handle);
      const entry = entries.get(key);
      if (!entry || entry.tenant !== tenant) {
        const wasExpired = !entry && expired.get(key) === tenant;
        throw new OpalError(
          Code.NOT_FOUND,
          wasExpired
            ? "the KV handle's lease expired"
            : "no KV handle of that name for this tenant",
          {
            reason: wasExpired ? Reason.KV_HANDLE_EXPIRED : Reason.KV_HANDLE_NOT_FOUND,
            // Never the handle itself, not even a prefix (ERR-6): it is a bearer capability.
            resource: { resourceType: "opal.device.v1.KvHandle", resourceName: "" },
          },
        );
      }
      return entry;
    },
    release(tenant, handle) {
      sweep();
      const key = handleKey(handle);
      const entry = entries.get(key);
      if (!entry || entry.tenant !== tenant) return false;
      forget(key, entry, false);
      return true;
    },
    clear() {
      entries.clear();
      expired.clear();
      bytes = 0;
    },
  };
}
