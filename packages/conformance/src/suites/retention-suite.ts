import { Code, sleep } from "@opal/core";
import { partByteLength, partsOf, toHex } from "@opal/kv";
import { partEnum } from "@opal/protocol";
import { collectKvStream } from "../collect-kv-stream";
import {
  assertConformance,
  CORE,
  type ConformanceContext,
  type ConformanceTest,
  optional,
} from "../conformance-test";
import { drain, expectFailure } from "../expect-status";
import { assertCompleted } from "./prefill-checks";
import { descriptorHex, fetch, notFound, retainedPrefill } from "./retention-checks";

/** Retention: FetchKv, resume, ReleaseKv and leases. */
export function toRetentionSuite(): ConformanceTest[] {
  return [
    {
      id: "retention.fetch",
      title: "FetchKv re-streams a retained cache: same descriptor, same bytes, whole-cache digest",
      tag: optional("retention"),
      spec: ["RT-4", "RT-11", "RT-12", "RT-15"],
      needs: ["model"],
      run: runRetentionFetch,
    },
    {
      id: "retention.resume",
      title:
        "FetchKv resumes exactly at a position, at the end position, and rejects positions outside the cache",
      tag: optional("resume"),
      spec: ["RT-12", "RT-13", "RT-14"],
      needs: ["model"],
      run: runRetentionResume,
    },
    {
      id: "retention.release",
      title:
        "ReleaseKv frees a retained cache once, then answers released = false; FetchKv then fails KV_HANDLE_NOT_FOUND",
      tag: optional("retention"),
      spec: ["RT-17", "RT-18", "RT-11"],
      needs: ["model"],
      run: runRetentionRelease,
    },
    {
      id: "retention.unretained-handle",
      title: "The handle of a prefill without retention cannot be fetched",
      tag: CORE,
      spec: ["RT-6", "RT-11"],
      needs: ["model"],
      run: runRetentionUnretainedHandle,
    },
    {
      id: "retention.lease-expiry",
      title:
        "A lease of 1 s is reported in accepted and ends: FetchKv then fails NOT_FOUND, ReleaseKv answers false",
      tag: optional("retention"),
      spec: ["RT-2", "RT-5", "RT-7", "RT-11", "RT-17"],
      needs: ["model"],
      timeoutMs: 20_000,
      run: runRetentionLeaseExpiry,
    },
  ];
}

/**
 * `retention.fetch`: FetchKv re-streams a retained cache: same descriptor, same bytes, whole-cache
 * digest.
 */
async function runRetentionFetch(ctx: ConformanceContext): Promise<void> {
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
}

/**
 * `retention.resume`: FetchKv resumes exactly at a position, at the end position, and rejects
 * positions outside the cache.
 */
async function runRetentionResume(ctx: ConformanceContext): Promise<void> {
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
    const r = assertCompleted(resumed, `FetchKv from layer ${layer} ${part} offset ${offsetBytes}`);
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
    assertConformance(
      Number(r.completed.kvTotalBytes) === done.receivedBytes,
      `RT-12: the resumed stream's kv_total_bytes ${r.completed.kvTotalBytes} is not the whole cache's ${done.receivedBytes}`,
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
    assertConformance(
      Number(e.completed.kvTotalBytes) === done.receivedBytes &&
        toHex(e.completed.kvDigest ?? new Uint8Array()) === done.digestHex,
      "RT-12: FetchKv from the end position completed without the whole cache's kv_total_bytes and kv_digest",
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
}

/**
 * `retention.release`: ReleaseKv frees a retained cache once, then answers released = false;
 * FetchKv then fails KV_HANDLE_NOT_FOUND.
 */
async function runRetentionRelease(ctx: ConformanceContext): Promise<void> {
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
}

/** `retention.unretained-handle`: The handle of a prefill without retention cannot be fetched. */
async function runRetentionUnretainedHandle(ctx: ConformanceContext): Promise<void> {
  const done = assertCompleted(
    await ctx.prefill(ctx.prefillRequest()),
    "a prefill without retention",
  );
  const retention = (ctx.capabilities.retention?.maxRetentionSeconds ?? 0) > 0;
  await expectFailure(
    () => drain(fetch(ctx, done.accepted.kvHandle ?? "")),
    retention
      ? notFound("RT-6")
      : {
          code: Code.UNIMPLEMENTED,
          reasons: ["UNSUPPORTED_FEATURE"],
          field: "kv_handle",
          spec: "RT-11",
        },
    "FetchKv of an unretained cache",
  );
}

/**
 * `retention.lease-expiry`: A lease of 1 s is reported in accepted and ends: FetchKv then fails
 * NOT_FOUND, ReleaseKv answers false.
 */
async function runRetentionLeaseExpiry(ctx: ConformanceContext): Promise<void> {
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
}
