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
