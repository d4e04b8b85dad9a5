import { createHash } from "node:crypto";
import { Code } from "@opal/core";
import { createKvCache } from "@opal/kv";
import { expectOpalError } from "@opal/testing";
import { describe, expect, it } from "vitest";
import { mhaDescriptor } from "../../kv/test/fixtures";
import { createRetentionStore, handleKey } from "./retention-store";

const descriptor = mhaDescriptor({
  numLayers: 1,
  attention: { kind: "mha", numKvHeads: 1, headDim: 4 },
  headRange: { start: 0, count: 1 },
  tokenCount: 2,
});

describe("createRetentionStore (SEC-15: entries keyed by a hash of the handle)", () => {
  it("finds a handle only by itself: near misses, prefixes and extensions are NOT_FOUND", async () => {
    let clock = 1_000;
    const store = createRetentionStore(1 << 20, () => clock);
    const handle = "AbCdEfGhIjKlMnOpQrStUv";
    const entry = { tenant: "a", cache: createKvCache(descriptor), digest: new Uint8Array(16) };
    store.retain(handle, { ...entry, leaseExpiryUnixMs: 2_000 });
    expect(store.get("a", handle).tenant).toBe("a");
    for (const guess of [`${handle.slice(0, -1)}w`, handle.slice(0, 21), `${handle}x`, ""]) {
      await expectOpalError(
        Promise.resolve().then(() => store.get("a", guess)),
        Code.NOT_FOUND,
        "KV_HANDLE_NOT_FOUND",
      );
      expect(store.release("a", guess)).toBe(false);
    }
    // Expiry is remembered by key too: EXPIRED for its tenant, NOT_FOUND for anyone else.
    clock = 2_000;
    await expectOpalError(
      Promise.resolve().then(() => store.get("a", handle)),
      Code.NOT_FOUND,
      "KV_HANDLE_EXPIRED",
    );
    await expectOpalError(
      Promise.resolve().then(() => store.get("b", handle)),
      Code.NOT_FOUND,
      "KV_HANDLE_NOT_FOUND",
    );
    expect(store.byteLength).toBe(0);
  });

  it("keys by SHA-256, so no lookup ever compares handle strings", () => {
    const handle = "AbCdEfGhIjKlMnOpQrStUv";
    expect(handleKey(handle)).toBe(createHash("sha256").update(handle).digest("base64"));
    expect(handleKey(handle)).not.toContain(handle.slice(0, 4));
  });
});

describe("createRetentionStore per-tenant quotas (RT-20, issue #18 item 2)", () => {
  const entry = (tenant: string, leaseExpiryUnixMs: number) => ({
    tenant,
    cache: createKvCache(descriptor),
    digest: new Uint8Array(16),
    leaseExpiryUnixMs,
  });
  const bytes = 2 * 2 * 4 * 4; // K and V, 2 tokens × 4 values of f32

  it("caps one tenant's leases, with the delay until its first lease ends; other tenants are unaffected", async () => {
    let clock = 1_000;
    const store = createRetentionStore({ maxBytes: 1 << 20, maxLeasesPerTenant: 2 }, () => clock);
    store.retain("h1", entry("a", 5_000));
    store.retain("h2", entry("a", 9_000));
    const error = await expectOpalError(
      Promise.resolve().then(() => store.retain("h3", entry("a", 9_000))),
      Code.RESOURCE_EXHAUSTED,
      "RETENTION_LIMIT_EXCEEDED",
    );
    expect(error.message).toContain("holds 2 of its 2 retained caches");
    expect(error.retryDelayMs).toBe(4_000);
    store.retain("h4", entry("b", 9_000));
    clock = 5_000;
    store.retain("h3", entry("a", 9_000));
    expect(store.byteLength).toBe(3 * bytes);
  });

  it("caps one tenant's bytes below the device budget; a cache above the quota gets no RetryInfo", async () => {
    const store = createRetentionStore(
      { maxBytes: 4 * bytes, maxBytesPerTenant: 2 * bytes },
      () => 1_000,
    );
    store.retain("h1", entry("a", 3_000));
    store.retain("h2", entry("a", 4_000));
    const error = await expectOpalError(
      Promise.resolve().then(() => store.assertFits("a", bytes)),
      Code.RESOURCE_EXHAUSTED,
      "RETENTION_LIMIT_EXCEEDED",
    );
    expect(error.message).toContain(`the tenant's quota of ${2 * bytes} bytes`);
    expect(error.retryDelayMs).toBe(2_000);
    store.assertFits("b", 2 * bytes);
    const tooBig = await expectOpalError(
      Promise.resolve().then(() => store.assertFits("b", 3 * bytes)),
      Code.RESOURCE_EXHAUSTED,
      "RETENTION_LIMIT_EXCEEDED",
    );
    expect(tooBig.retryDelayMs).toBeUndefined();
    // Releasing gives the bytes and the lease back to the tenant.
    expect(store.release("a", "h1")).toBe(true);
    store.assertFits("a", bytes);
  });
});
