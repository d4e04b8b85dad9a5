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

/** Budgets of a {@link RetentionStore}. */
export interface RetentionBudget {
  /** Bytes retained over all tenants. */
  readonly maxBytes: number;
  /** Bytes one tenant may hold retained (`RT-20`); default `maxBytes`. */
  readonly maxBytesPerTenant?: number;
  /** Retained caches (leases) one tenant may hold (`RT-20`); default unlimited. */
  readonly maxLeasesPerTenant?: number;
}

/**
 * Tenant-scoped store of retained caches with leases, a byte budget and per-tenant quotas. A leased
 * cache is never evicted (RT-4): a cache that does not fit is refused instead (RT-1, RT-20).
 */
export interface RetentionStore {
  /**
   * Throws RESOURCE_EXHAUSTED `RETENTION_LIMIT_EXCEEDED` when `byteLength` more bytes of `tenant`
   * do not fit now: in the tenant's quota of bytes or leases, or in the device's budget. With
   * RetryInfo (the time until enough leases end) when they would fit then, without it for a cache
   * larger than the whole budget or the tenant's quota.
   */
  assertFits(tenant: string, byteLength: number): void;
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
 * Creates a store within `budget` (a number: `maxBytes` and no per-tenant quota). `now` returns ms
 * since the Unix epoch. Entries are keyed by {@link handleKey}, never by the handle itself; `get`
 * never reorders or evicts them.
 */
export function createRetentionStore(
  budget: number | RetentionBudget,
  now: () => number = Date.now,
): RetentionStore {
  const {
    maxBytes,
    maxBytesPerTenant = Infinity,
    maxLeasesPerTenant = Infinity,
  } = typeof budget === "number" ? { maxBytes: budget } : budget;
  /** Retained caches by handle key. */
  const entries = new Map<string, RetainedKv>();
  /** Tenants of expired handles by handle key, to tell EXPIRED from NOT_FOUND without telling other tenants. */
  const expired = new Map<string, string>();
  /** Bytes and leases held per tenant. */
  const held = new Map<string, { bytes: number; leases: number }>();
  let bytes = 0;
  const account = (tenant: string, byteLength: number, leases: number) => {
    const mine = held.get(tenant) ?? { bytes: 0, leases: 0 };
    mine.bytes += byteLength;
    mine.leases += leases;
    if (mine.leases === 0) held.delete(tenant);
    else held.set(tenant, mine);
    bytes += byteLength;
  };
  const forget = (key: string, entry: RetainedKv, wasExpired: boolean) => {
    entries.delete(key);
    account(entry.tenant, -entry.byteLength, -1);
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
  /** ms until leases of `among` free `needed` bytes (and `leases` leases); 0 if they never do. */
  const waitFor = (among: (e: RetainedKv) => boolean, needed: number, leases: number) => {
    let freedBytes = 0;
    let freedLeases = 0;
    for (const entry of [...entries.values()]
      .filter(among)
      .sort((a, b) => a.leaseExpiryUnixMs - b.leaseExpiryUnixMs)) {
      freedBytes += entry.byteLength;
      freedLeases++;
      if (freedBytes >= needed && freedLeases >= leases)
        return Math.max(1, entry.leaseExpiryUnixMs - now());
    }
    return 0;
  };
  const exhausted = (message: string, retryDelayMs: number) =>
    new OpalError(Code.RESOURCE_EXHAUSTED, message, {
      reason: Reason.RETENTION_LIMIT_EXCEEDED,
      ...(retryDelayMs > 0 ? { retryDelayMs } : {}),
    });
  function assertFits(tenant: string, byteLength: number): void {
    sweep();
    const mine = held.get(tenant) ?? { bytes: 0, leases: 0 };
    const ours = (e: RetainedKv) => e.tenant === tenant;
    if (mine.leases + 1 > maxLeasesPerTenant) {
      throw exhausted(
        `the tenant holds ${mine.leases} of its ${maxLeasesPerTenant} retained caches`,
        waitFor(ours, 0, mine.leases + 1 - maxLeasesPerTenant),
      );
    }
    if (mine.bytes + byteLength > maxBytesPerTenant) {
      const fits = byteLength <= maxBytesPerTenant;
      throw exhausted(
        `retaining ${byteLength} more bytes would exceed the tenant's quota of ${maxBytesPerTenant} bytes (${mine.bytes} leased)`,
        fits ? waitFor(ours, mine.bytes + byteLength - maxBytesPerTenant, 0) : 0,
      );
    }
    if (bytes + byteLength <= maxBytes) return;
    if (byteLength > maxBytes) {
      throw exhausted(
        `a cache of ${byteLength} bytes exceeds the retention budget of ${maxBytes} bytes`,
        0,
      );
    }
    // Leases end in expiry order: wait until enough of them have ended for the cache to fit.
    throw exhausted(
      `retaining ${byteLength} more bytes would exceed the budget of ${maxBytes} bytes (${bytes} leased)`,
      waitFor(() => true, bytes + byteLength - maxBytes, 0),
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
      assertFits(entry.tenant, byteLength);
      entries.set(handleKey(handle), { ...entry, byteLength });
      account(entry.tenant, byteLength, 1);
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
      held.clear();
      bytes = 0;
    },
  };
}
