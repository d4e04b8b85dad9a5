import { Code, sleep } from "@opal/core";
import { partByteLength, partsOf, toHex } from "@opal/kv";
import { opal, partEnum } from "@opal/protocol";
import { collectKvStream } from "../collect-kv-stream";
import {
  assertConformance,
  assertNoViolations,
  CORE,
  type ConformanceContext,
  type ConformanceTest,
  optional,
} from "../conformance-test";
import { drain, expectFailure } from "../expect-status";
import type { WireClient } from "../wire-client";
import { describeWireStatus } from "../wire-status";
import { assertHeldAccepted, connectSlowReader, startHeldPrefill } from "./held-prefill";
import { assertCompleted } from "./prefill-suite";

const v1 = opal.device.v1;
const descriptorHex = (d: opal.device.v1.IKvDescriptor | null | undefined) =>
  Buffer.from(v1.KvDescriptor.encode(d ?? {}).finish()).toString("hex");

function fetch(
  ctx: ConformanceContext,
  kvHandle: string,
  extra: Partial<opal.device.v1.FetchKvRequest.$Properties> = {},
  client: WireClient = ctx.a,
) {
  return client.stream(
    "fetchKv",
    { kvHandle, ...extra },
    { timeoutMs: ctx.prefillTimeoutMs, signal: ctx.signal },
  );
}

async function retainedPrefill(ctx: ConformanceContext, seconds = 60, client?: WireClient) {
  const max = ctx.capabilities.retention?.maxRetentionSeconds ?? 0;
  const request = ctx.prefillRequest({
    retentionSeconds: Math.min(seconds, max),
    promptTokenIds: ctx.prompt(30, 21),
  });
  return {
    request,
    done: assertCompleted(
      await ctx.prefill(request, client ? { client } : {}),
      "a retained prefill",
    ),
  };
}

const notFound = (spec: string) => ({
  code: Code.NOT_FOUND,
  reasons: ["KV_HANDLE_NOT_FOUND"],
  spec,
});

/** request_id idempotence, retention, FetchKv, ReleaseKv, leases and tenant isolation. */
export function toRetentionSuite(): ConformanceTest[] {
  return [
    {
      id: "idempotence.conflict",
      title:
        "The same request_id with a different body fails ALREADY_EXISTS REQUEST_ID_CONFLICT while the first runs",
      tag: CORE,
      spec: ["PF-5", "PF-6", "PF-2"],
      needs: ["model"],
      async run(ctx) {
        const held = startHeldPrefill(ctx, connectSlowReader(ctx));
        try {
          await assertHeldAccepted(held, "the first prefill");
          await expectFailure(
            () =>
              drain(
                ctx.a.stream(
                  "prefill",
                  { ...held.request, promptTokenIds: ctx.prompt(9, 1) },
                  { timeoutMs: ctx.prefillTimeoutMs },
                ),
              ),
            { code: Code.ALREADY_EXISTS, reasons: ["REQUEST_ID_CONFLICT"], spec: "PF-6" },
            "the same request_id with another prompt",
          );
        } finally {
          held.cancel();
        }
      },
    },
    {
      id: "idempotence.supersede-running",
      title:
        "A retry with the same request_id and body while the first runs cancels the first (CANCELLED) and completes",
      tag: CORE,
      spec: ["PF-7"],
      needs: ["model"],
      async run(ctx) {
        const held = startHeldPrefill(ctx, connectSlowReader(ctx));
        try {
          await assertHeldAccepted(held, "the first prefill");
          const retry = await ctx.prefill(held.request);
          assertCompleted(retry, "the retry");
          const first = await held.finish();
          assertConformance(
            first.status?.code === Code.CANCELLED &&
              first.status.details?.errorInfos[0]?.reason === "CANCELLED",
            `PF-7: the superseded call ended ${first.status ? describeWireStatus(first.status) : first.completed ? "with a complete stream" : "OK"}, expected CANCELLED CANCELLED`,
          );
        } finally {
          held.cancel();
        }
      },
    },
    {
      id: "idempotence.replay-recompute",
      title:
        "Replaying a finished, unretained request_id gives the same descriptor and first token",
      tag: CORE,
      spec: ["PF-7", "PF-34"],
      needs: ["model"],
      async run(ctx) {
        const request = ctx.prefillRequest({ promptTokenIds: ctx.prompt(28, 4) });
        const a = assertCompleted(await ctx.prefill(request), "the original");
        const b = assertCompleted(await ctx.prefill(request), "the replay");
        assertConformance(
          descriptorHex(a.accepted.descriptor) === descriptorHex(b.accepted.descriptor),
          "PF-7: the replay has another descriptor",
        );
        assertConformance(
          a.completed.firstTokenId === b.completed.firstTokenId,
          `PF-7: first token ${a.completed.firstTokenId} then ${b.completed.firstTokenId}`,
        );
        if (a.descriptor.numerics.bitExact) {
          assertConformance(
            a.digestHex === b.digestHex,
            "PF-34: a bit-exact device produced different bytes for the same request",
          );
        }
      },
    },
    {
      id: "idempotence.replay-retained",
      title:
        "Replaying a retained request_id answers from the cache: same handle, lease, digest and first token",
      tag: optional("retention"),
      spec: ["PF-7", "RT-4"],
      needs: ["model"],
      async run(ctx) {
        const { request, done: a } = await retainedPrefill(ctx);
        try {
          const b = assertCompleted(await ctx.prefill(request), "the replay");
          const problems: string[] = [];
          if (a.accepted.kvHandle !== b.accepted.kvHandle) problems.push("kv_handle differs");
          if (descriptorHex(a.accepted.descriptor) !== descriptorHex(b.accepted.descriptor))
            problems.push("descriptor differs");
          if (Number(a.accepted.leaseExpiryUnixMs) !== Number(b.accepted.leaseExpiryUnixMs))
            problems.push("lease_expiry_unix_ms differs");
          if (a.digestHex !== b.digestHex) problems.push("the bytes differ");
          if (
            toHex(a.completed.kvDigest ?? new Uint8Array()) !==
            toHex(b.completed.kvDigest ?? new Uint8Array())
          )
            problems.push("kv_digest differs");
          for (const k of [
            "firstTokenId",
            "firstTokenLogprob",
            "promptTokens",
            "prefixCacheHitTokens",
            "decoderPrefixTokens",
          ] as const) {
            if (a.completed[k] !== b.completed[k])
              problems.push(`${k} ${a.completed[k]} then ${b.completed[k]}`);
          }
          assertConformance(problems.length === 0, `PF-7: ${problems.join("; ")}`);
        } finally {
          await ctx.a.unary("releaseKv", { kvHandle: a.accepted.kvHandle ?? "" }).catch(() => {});
        }
      },
    },
    {
      id: "retention.fetch",
      title: "FetchKv re-streams a retained cache: same descriptor, same bytes, whole-cache digest",
      tag: optional("retention"),
      spec: ["RT-4", "RT-11", "RT-12", "RT-15"],
      needs: ["model"],
      async run(ctx) {
        const { done } = await retainedPrefill(ctx);
        const handle = done.accepted.kvHandle ?? "";
        try {
          const fetched = await collectKvStream(fetch(ctx, handle, { maxChunkBytes: 777 }), {
            chunkBytes: 777,
          });
          const f = assertCompleted(fetched, "FetchKv");
          assertConformance(
            descriptorHex(f.accepted.descriptor) === descriptorHex(done.accepted.descriptor),
            "RT-12: FetchKv's descriptor differs from the prefill's",
          );
          assertConformance(
            f.digestHex === done.digestHex,
            "RT-4: FetchKv's bytes differ from the prefill's",
          );
          assertConformance(
            toHex(f.completed.kvDigest ?? new Uint8Array()) === done.digestHex,
            "RT-12: FetchKv's kv_digest is not the whole cache's",
          );
          assertConformance(
            Number(f.completed.kvTotalBytes) === done.receivedBytes,
            "RT-12: FetchKv's kv_total_bytes differs",
          );
        } finally {
          await ctx.a.unary("releaseKv", { kvHandle: handle }).catch(() => {});
        }
      },
    },
    {
      id: "retention.resume",
      title:
        "FetchKv resumes exactly at a position, at the end position, and rejects positions outside the cache",
      tag: optional("resume"),
      spec: ["RT-12", "RT-13", "RT-14"],
      needs: ["model"],
      async run(ctx) {
        const { done } = await retainedPrefill(ctx);
        const handle = done.accepted.kvHandle ?? "";
        const d = done.descriptor;
        const parts = partsOf(d);
        try {
          const layer = Math.min(1, d.numLayers - 1);
          const partIndex = Math.min(1, parts.length - 1);
          const part = parts[partIndex]!;
          const offsetBytes = Math.min(100, partByteLength(d, part) - 1);
          const from = { layer, part: partEnum.toWire(part), offsetBytes };
          const resumed = await collectKvStream(
            fetch(ctx, handle, { resumeFrom: from, maxChunkBytes: 500 }),
            {
              chunkBytes: 500,
              start: { layer, partIndex, offsetBytes },
            },
          );
          const r = assertCompleted(
            resumed,
            `FetchKv from layer ${layer} ${part} offset ${offsetBytes}`,
          );
          // Bytes from the position on must equal the original ones (RT-4, RT-14).
          for (let l = layer; l < d.numLayers; l++) {
            for (const [i, p] of parts.entries()) {
              if (l === layer && i < partIndex) continue;
              const start = l === layer && i === partIndex ? offsetBytes : 0;
              const a = done.parts[l]![p]!.subarray(start);
              const b = r.parts[l]![p]!.subarray(start);
              assertConformance(
                Buffer.compare(a, b) === 0,
                `RT-14: resumed bytes of layer ${l} ${p} differ from the original`,
              );
            }
          }
          assertConformance(
            toHex(r.completed.kvDigest ?? new Uint8Array()) === done.digestHex,
            "RT-12: the resumed stream's kv_digest is not the whole cache's",
          );
          const end = await collectKvStream(
            fetch(ctx, handle, { resumeFrom: { layer: d.numLayers, part: 0, offsetBytes: 0 } }),
            {
              chunkBytes: ctx.capabilities.preferredChunkBytes ?? 1,
              start: { layer: d.numLayers, partIndex: 0, offsetBytes: 0 },
            },
          );
          const e = assertCompleted(end, "FetchKv from the end position");
          assertConformance(
            e.chunkCount === 0,
            `RT-13: FetchKv from the end position sent ${e.chunkCount} chunks`,
          );
          await expectFailure(
            () =>
              drain(
                fetch(ctx, handle, {
                  resumeFrom: { layer: d.numLayers + 1, part: 0, offsetBytes: 0 },
                }),
              ),
            { code: Code.OUT_OF_RANGE, reasons: ["RESUME_POSITION_INVALID"], spec: "RT-13" },
            "a resume position past the last layer",
          );
          await expectFailure(
            () =>
              drain(
                fetch(ctx, handle, {
                  resumeFrom: { layer: 0, part: from.part, offsetBytes: partByteLength(d, part) },
                }),
              ),
            { code: Code.OUT_OF_RANGE, reasons: ["RESUME_POSITION_INVALID"], spec: "RT-13" },
            "a resume offset equal to the part size",
          );
        } finally {
          await ctx.a.unary("releaseKv", { kvHandle: handle }).catch(() => {});
        }
      },
    },
    {
      id: "retention.release",
      title:
        "ReleaseKv frees a retained cache once, then answers released = false; FetchKv then fails KV_HANDLE_NOT_FOUND",
      tag: optional("retention"),
      spec: ["RT-17", "RT-18", "RT-11"],
      needs: ["model"],
      async run(ctx) {
        const { done } = await retainedPrefill(ctx);
        const kvHandle = done.accepted.kvHandle ?? "";
        const first = await ctx.a.unary("releaseKv", { kvHandle });
        assertConformance(
          first.released,
          "RT-17: releasing a live retained cache answered released = false",
        );
        const second = await ctx.a.unary("releaseKv", { kvHandle });
        assertConformance(!second.released, "RT-17: a second release answered released = true");
        await expectFailure(
          () => drain(fetch(ctx, kvHandle)),
          notFound("RT-18"),
          "FetchKv after ReleaseKv",
        );
        const unknown = await ctx.a.unary("releaseKv", {
          kvHandle: "opal-conformance-never-issued-handle",
        });
        assertConformance(
          !unknown.released,
          "RT-17: releasing an unknown handle answered released = true",
        );
      },
    },
    {
      id: "retention.unretained-handle",
      title: "The handle of a prefill without retention cannot be fetched",
      tag: CORE,
      spec: ["RT-6", "RT-11"],
      needs: ["model"],
      async run(ctx) {
        const done = assertCompleted(
          await ctx.prefill(ctx.prefillRequest()),
          "a prefill without retention",
        );
        const retention = (ctx.capabilities.retention?.maxRetentionSeconds ?? 0) > 0;
        await expectFailure(
          () => drain(fetch(ctx, done.accepted.kvHandle ?? "")),
          retention
            ? notFound("RT-6")
            : { code: Code.UNIMPLEMENTED, reasons: ["UNSUPPORTED_FEATURE"], spec: "RT-6" },
          "FetchKv of an unretained cache",
        );
      },
    },
    {
      id: "retention.lease-expiry",
      title:
        "A lease of 1 s is reported in accepted and ends: FetchKv then fails NOT_FOUND, ReleaseKv answers false",
      tag: optional("retention"),
      spec: ["RT-2", "RT-5", "RT-7", "RT-11", "RT-17"],
      needs: ["model"],
      timeoutMs: 20_000,
      async run(ctx) {
        const before = Date.now();
        const { done } = await retainedPrefill(ctx, 1);
        const lease = Number(done.accepted.leaseExpiryUnixMs ?? 0);
        assertConformance(
          lease > 0,
          "RT-2: accepted.lease_expiry_unix_ms is 0 with retention_seconds = 1",
        );
        assertConformance(
          lease >= before + 1000 - 30_000 && lease <= Date.now() + 1000 + 30_000,
          `RT-2: lease_expiry_unix_ms ${lease} is not accept time + 1,000 ms (allowing 30 s of clock skew)`,
        );
        await sleep(2_500, ctx.signal);
        const handle = done.accepted.kvHandle ?? "";
        await expectFailure(
          () => drain(fetch(ctx, handle)),
          {
            code: Code.NOT_FOUND,
            reasons: ["KV_HANDLE_EXPIRED", "KV_HANDLE_NOT_FOUND"],
            spec: "RT-5",
          },
          "FetchKv 1.5 s after the lease ended",
        );
        const release = await ctx.a.unary("releaseKv", { kvHandle: handle });
        assertConformance(
          !release.released,
          "RT-17: releasing an expired handle answered released = true",
        );
      },
    },
    {
      id: "tenants.handles-isolated",
      title:
        "Another tenant's handle behaves as unknown: FetchKv NOT_FOUND, ReleaseKv false, the owner keeps it",
      tag: optional("tenants"),
      spec: ["RT-9", "SEC-7"],
      needs: ["model"],
      async run(ctx) {
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
      },
    },
    {
      id: "tenants.request-ids-scoped",
      title: "request_ids of different tenants never interact",
      tag: optional("tenants"),
      spec: ["PF-4"],
      needs: ["model"],
      async run(ctx) {
        const held = startHeldPrefill(ctx, connectSlowReader(ctx));
        try {
          await assertHeldAccepted(held, "tenant A's prefill");
          const other = await ctx.prefill(
            { ...held.request, promptTokenIds: ctx.prompt(12, 2), maxChunkBytes: 0 },
            { client: ctx.b! },
          );
          assertCompleted(
            other,
            "tenant B's prefill with tenant A's running request_id and another body",
          );
        } finally {
          held.cancel();
        }
      },
    },
    {
      id: "tenants.prefix-cache-isolated",
      title: "A prefix cached by one tenant is never a hit for another",
      tag: optional("tenants"),
      spec: ["PH-3", "PH-7"],
      needs: ["model"],
      async run(ctx) {
        if (!ctx.capabilities.features?.prefixCache)
          ctx.skip("the device declares no prefix cache");
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
      },
    },
  ];
}
