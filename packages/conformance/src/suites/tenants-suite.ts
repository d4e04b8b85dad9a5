import { collectKvStream } from "../collect-kv-stream";
import {
  assertConformance,
  assertNoViolations,
  type ConformanceContext,
  type ConformanceTest,
  optional,
} from "../conformance-test";
import { drain, expectFailure } from "../expect-status";
import { assertHeldAccepted, connectSlowReader, startHeldPrefill } from "./held-prefill";
import { assertCompleted } from "./prefill-checks";
import { fetch, notFound, retainedPrefill } from "./retention-checks";

/** Tenant isolation of handles, request ids and the prefix cache. */
export function toTenantsSuite(): ConformanceTest[] {
  return [
    {
      id: "tenants.handles-isolated",
      title:
        "Another tenant's handle behaves as unknown: FetchKv NOT_FOUND, ReleaseKv false, the owner keeps it",
      tag: optional("tenants"),
      spec: ["RT-9", "SEC-7"],
      needs: ["model"],
      run: runTenantsHandlesIsolated,
    },
    {
      id: "tenants.request-ids-scoped",
      title: "request_ids of different tenants never interact",
      tag: optional("tenants"),
      spec: ["PF-4"],
      needs: ["model"],
      run: runTenantsRequestIdsScoped,
    },
    {
      id: "tenants.prefix-cache-isolated",
      title: "A prefix cached by one tenant is never a hit for another",
      tag: optional("tenants"),
      spec: ["PH-3", "PH-7"],
      needs: ["model"],
      run: runTenantsPrefixCacheIsolated,
    },
  ];
}

/**
 * `tenants.handles-isolated`: Another tenant's handle behaves as unknown: FetchKv NOT_FOUND,
 * ReleaseKv false, the owner keeps it.
 */
async function runTenantsHandlesIsolated(ctx: ConformanceContext): Promise<void> {
  if ((ctx.capabilities.retention?.maxRetentionSeconds ?? 0) === 0)
    ctx.skip("the device has no retention");
  const b = ctx.b!;
  const { done } = await retainedPrefill(ctx);
  const kvHandle = done.accepted.kvHandle ?? "";
  try {
    await expectFailure(
      () => drain(fetch(ctx, kvHandle, {}, b)),
      notFound("RT-9"),
      "tenant B fetching tenant A's handle",
    );
    const released = await b.unary("releaseKv", { kvHandle });
    assertConformance(!released.released, "RT-9: tenant B released tenant A's cache");
    const again = assertCompleted(
      await collectKvStream(fetch(ctx, kvHandle), {
        chunkBytes: ctx.capabilities.preferredChunkBytes ?? 1,
      }),
      "tenant A fetching its own cache afterwards",
    );
    assertConformance(again.digestHex === done.digestHex, "RT-4: tenant A's cache changed");
  } finally {
    await ctx.a.unary("releaseKv", { kvHandle }).catch(() => {});
  }
}

/** `tenants.request-ids-scoped`: request_ids of different tenants never interact. */
async function runTenantsRequestIdsScoped(ctx: ConformanceContext): Promise<void> {
  const held = startHeldPrefill(ctx, connectSlowReader(ctx));
  try {
    await assertHeldAccepted(held, "tenant A's prefill");
    const other = await ctx.prefill(
      { ...held.request, promptTokenIds: ctx.prompt(12, 2), maxChunkBytes: 0 },
      { client: ctx.b! },
    );
    assertCompleted(
      other,
      "PF-4: tenant B's prefill with tenant A's running request_id and another body",
    );
  } finally {
    held.cancel();
  }
}

/** `tenants.prefix-cache-isolated`: A prefix cached by one tenant is never a hit for another. */
async function runTenantsPrefixCacheIsolated(ctx: ConformanceContext): Promise<void> {
  if (!ctx.capabilities.features?.prefixCache) ctx.skip("the device declares no prefix cache");
  const tokens = ctx.prompt(64, 23);
  const salt = `conformance-${ctx.requestId("tenant-salt")}`;
  for (let i = 0; i < 2; i++)
    assertCompleted(
      await ctx.prefill(ctx.prefillRequest({ promptTokenIds: tokens, cacheSalt: salt })),
      "tenant A",
    );
  const b = assertCompleted(
    await ctx.prefill(ctx.prefillRequest({ promptTokenIds: tokens, cacheSalt: salt }), {
      client: ctx.b!,
    }),
    "tenant B",
  );
  assertConformance(
    (b.completed.prefixCacheHitTokens ?? 0) === 0,
    `PH-3: tenant B got ${b.completed.prefixCacheHitTokens} hit tokens from tenant A's prefix`,
  );
  assertNoViolations(b.violations);
}
