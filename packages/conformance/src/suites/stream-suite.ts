import { cacheByteLength } from "@opal/kv";
import {
  assertConformance,
  assertNoViolations,
  CORE,
  type ConformanceContext,
  type ConformanceTest,
} from "../conformance-test";
import { describeWireStatus } from "../wire-status";
import {
  assertBaseline,
  assertCompleted,
  baselinePrefill,
  declaredFormats,
  describeFormat,
  digestViolations,
  firstTokenViolations,
  sizeViolations,
} from "./prefill-checks";

/** Stream rules: canonical order, CRCs, digest, descriptor and `completed`. */
export function toStreamSuite(): ConformanceTest[] {
  return [
    {
      id: "stream.canonical-order",
      title:
        "One accepted, chunks in canonical order with contiguous offsets, valid CRC32C and sizes, one completed last",
      tag: CORE,
      spec: ["PF-10", "PF-13", "PF-14", "PF-15", "PF-28"],
      needs: ["model"],
      run: runStreamCanonicalOrder,
    },
    {
      id: "stream.digest",
      title: "completed.kv_total_bytes and kv_digest match the bytes received",
      tag: CORE,
      spec: ["PF-17", "PF-25", "PF-26", "PF-18"],
      needs: ["model"],
      run: runStreamDigest,
    },
    {
      id: "stream.every-format",
      title:
        "Every declared dtype, layout, scale scheme and block size streams with exact sizes (total_bytes, kv_total_bytes), digest, finite values and an in-vocabulary first token",
      tag: CORE,
      spec: ["PF-12", "PF-17", "PF-18", "PF-20", "PF-22", "PF-25", "PF-26"],
      needs: ["model"],
      timeoutMs: 120_000,
      run: runStreamEveryFormat,
    },
    {
      id: "stream.descriptor",
      title: "The accepted descriptor matches the request, the model and the declared numerics",
      tag: CORE,
      spec: ["PF-12", "PF-18", "PF-35", "PF-40", "MD-2", "ID-8"],
      needs: ["model"],
      run: runStreamDescriptor,
    },
    {
      id: "stream.completed-fields",
      title: "accepted and completed carry consistent counts, timings, lease and handle",
      tag: CORE,
      spec: ["PF-11", "PF-17", "RT-2", "RT-8"],
      needs: ["model"],
      run: runStreamCompletedFields,
    },
    {
      id: "stream.default-chunk-size",
      title: "With max_chunk_bytes 0 no chunk exceeds preferred_chunk_bytes",
      tag: CORE,
      spec: ["PF-14"],
      needs: ["model"],
      run: runStreamDefaultChunkSize,
    },
    {
      id: "stream.max-chunk-size",
      title: "max_chunk_bytes equal to the declared maximum is accepted and respected",
      tag: CORE,
      spec: ["ID-7", "PF-14"],
      needs: ["model"],
      run: runStreamMaxChunkSize,
    },
  ];
}

/**
 * `stream.canonical-order`: One accepted, chunks in canonical order with contiguous offsets, valid
 * CRC32C and sizes, one completed last.
 */
async function runStreamCanonicalOrder(ctx: ConformanceContext): Promise<void> {
  const { collected } = await baselinePrefill(ctx);
  const done = assertCompleted(collected, "the baseline prefill");
  ctx.note(`${done.chunkCount} chunks, ${done.receivedBytes} bytes`);
}

/** `stream.digest`: completed.kv_total_bytes and kv_digest match the bytes received. */
async function runStreamDigest(ctx: ConformanceContext): Promise<void> {
  const done = assertBaseline(ctx, (await baselinePrefill(ctx)).collected);
  const total = Number(done.completed.kvTotalBytes ?? 0);
  assertConformance(
    total === done.receivedBytes,
    `PF-26: kv_total_bytes ${total}, received ${done.receivedBytes}`,
  );
  assertConformance(
    total === cacheByteLength(done.descriptor),
    `PF-17: kv_total_bytes ${total}, descriptor arithmetic ${cacheByteLength(done.descriptor)}`,
  );
  assertNoViolations(digestViolations(done, "the baseline prefill"));
}

/**
 * `stream.every-format`: Every declared dtype, layout, scale scheme and block size streams with
 * exact sizes (total_bytes, kv_total_bytes), digest, finite values and an in-vocabulary first
 * token.
 */
async function runStreamEveryFormat(ctx: ConformanceContext): Promise<void> {
  const formats = declaredFormats(ctx);
  const tokens = ctx.prompt(24, 7);
  for (const kvFormat of formats) {
    const done = assertCompleted(
      await ctx.prefill(ctx.prefillRequest({ promptTokenIds: tokens, kvFormat })),
      describeFormat(kvFormat),
    );
    assertNoViolations(sizeViolations(ctx, kvFormat, done));
  }
  ctx.note(`${formats.length} formats`);
}

/**
 * `stream.descriptor`: The accepted descriptor matches the request, the model and the declared
 * numerics.
 */
async function runStreamDescriptor(ctx: ConformanceContext): Promise<void> {
  const { request, collected } = await baselinePrefill(ctx);
  const done = assertBaseline(ctx, collected);
  const w = done.accepted.descriptor!;
  const m = ctx.model!.info;
  const f = request.kvFormat!;
  const problems: string[] = [];
  const eq = (what: string, got: unknown, want: unknown, rule = "PF-12") => {
    if (got !== want)
      problems.push(`${rule}: ${what} ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  };
  eq("dtype", w.dtype, f.dtype);
  eq("layout", w.layout, f.layout);
  eq("scale_scheme", w.scaleScheme, f.scaleScheme);
  eq("block_size_tokens", w.blockSizeTokens, f.blockSizeTokens);
  eq("model_fingerprint", w.modelFingerprint, m.fingerprint, "MD-2");
  eq("num_layers", w.numLayers, m.numLayers);
  eq("mha.num_kv_heads", w.mha?.numKvHeads, m.mha?.numKvHeads);
  eq("mha.head_dim", w.mha?.headDim, m.mha?.headDim);
  eq("head_range.start", w.headRange?.start ?? 0, 0);
  eq("head_range.count", w.headRange?.count, m.mha?.numKvHeads ?? 1);
  eq("token_start", Number(w.tokenStart ?? 0), 0);
  eq("token_count", Number(w.tokenCount ?? 0), request.promptTokenIds!.length);
  eq("total_bytes", Number(w.totalBytes ?? 0), cacheByteLength(done.descriptor), "PF-18");
  const n = w.numerics!;
  const c = ctx.capabilities.numerics ?? {};
  if (!n.deviceKind) problems.push("PF-35: numerics.device_kind is UNSPECIFIED");
  if ((n.maxAbsError ?? 0) > (c.maxAbsError ?? 0) || (n.maxRelError ?? 0) > (c.maxRelError ?? 0)) {
    problems.push(
      `PF-40: descriptor bound (${n.maxAbsError}, ${n.maxRelError}) looser than the capabilities' (${c.maxAbsError}, ${c.maxRelError})`,
    );
  }
  if (n.bitExact && !c.bitExact)
    problems.push("PF-40: descriptor claims bit_exact, the capabilities do not");
  if (c.bitExact && !n.bitExact)
    problems.push("PF-40: capabilities claim bit_exact, the descriptor does not");
  assertConformance(problems.length === 0, problems.join("; "));
}

/**
 * `stream.completed-fields`: accepted and completed carry consistent counts, timings, lease and
 * handle.
 */
async function runStreamCompletedFields(ctx: ConformanceContext): Promise<void> {
  const { request, collected } = await baselinePrefill(ctx);
  const done = assertBaseline(ctx, collected);
  const c = done.completed;
  const a = done.accepted;
  const problems: string[] = [];
  if (c.promptTokens !== request.promptTokenIds!.length)
    problems.push(`PF-17: prompt_tokens ${c.promptTokens}, sent ${request.promptTokenIds!.length}`);
  if ((c.decoderPrefixTokens ?? 0) !== Number(a.descriptor?.tokenStart ?? 0))
    problems.push("PF-17: decoder_prefix_tokens differs from descriptor.token_start");
  problems.push(...firstTokenViolations(ctx, c.firstTokenId ?? 0, "the baseline prefill"));
  const logprob = c.firstTokenLogprob ?? 0;
  if (!(Number.isFinite(logprob) && logprob <= 0))
    problems.push(`PF-17: first_token_logprob ${logprob} (must be finite and <= 0)`);
  if (Number(c.leaseExpiryUnixMs ?? 0) !== Number(a.leaseExpiryUnixMs ?? 0))
    problems.push(
      "PF-17: completed.lease_expiry_unix_ms differs from accepted.lease_expiry_unix_ms",
    );
  if (Number(c.queueTimeUs ?? 0) !== Number(a.queueTimeUs ?? 0))
    problems.push("PF-17: completed.queue_time_us differs from accepted.queue_time_us");
  if (Number(a.leaseExpiryUnixMs ?? 0) !== 0)
    problems.push("RT-2: lease_expiry_unix_ms set without retention");
  if ((c.prefixCacheHitTokens ?? 0) >= request.promptTokenIds!.length)
    problems.push("PH-4: prefix_cache_hit_tokens covers the whole prompt");
  if (!ctx.capabilities.features?.prefixCache && (c.prefixCacheHitTokens ?? 0) !== 0)
    problems.push("PF-17: prefix_cache_hit_tokens without features.prefix_cache");
  if (!/^[\x21-\x7e]{16,128}$/.test(a.kvHandle ?? ""))
    problems.push(
      `RT-8: kv_handle ${JSON.stringify(a.kvHandle)} is not 16-128 printable characters (>= 128 random bits)`,
    );
  const second = assertCompleted(await ctx.prefill(ctx.prefillRequest()), "a second prefill");
  if (second.accepted.kvHandle === a.kvHandle)
    problems.push("RT-8: two prefills got the same kv_handle");
  assertConformance(problems.length === 0, problems.join("; "));
}

/** `stream.default-chunk-size`: With max_chunk_bytes 0 no chunk exceeds preferred_chunk_bytes. */
async function runStreamDefaultChunkSize(ctx: ConformanceContext): Promise<void> {
  const preferred = ctx.capabilities.preferredChunkBytes ?? 1;
  const heads = ctx.model?.info.mha?.numKvHeads ?? 1;
  const perToken = (ctx.model?.info.mha?.headDim ?? 1) * heads * 4;
  const limit = Math.min(
    ctx.capabilities.maxPromptTokens ?? 1,
    ctx.model?.info.maxPositionEmbeddings || 1 << 20,
  );
  const n = Math.min(limit, Math.ceil((preferred + 1) / perToken) + 1, 4096);
  const done = assertCompleted(
    await ctx.prefill(ctx.prefillRequest({ promptTokenIds: ctx.prompt(n) })),
    "a prefill with max_chunk_bytes 0",
  );
  ctx.note(`${n} tokens, ${done.chunkCount} chunks of at most ${preferred} bytes`);
}

/**
 * `stream.max-chunk-size`: max_chunk_bytes equal to the declared maximum is accepted and respected.
 */
async function runStreamMaxChunkSize(ctx: ConformanceContext): Promise<void> {
  const max = ctx.capabilities.maxChunkBytes ?? 1;
  const run = await ctx.prefill(ctx.prefillRequest({ maxChunkBytes: max }));
  assertConformance(
    !run.status,
    `ID-7: a prefill with max_chunk_bytes ${max} (the declared maximum) failed: ${run.status ? describeWireStatus(run.status) : ""}`,
  );
  const done = assertCompleted(run, `a prefill with max_chunk_bytes ${max}`);
  ctx.note(`${done.chunkCount} chunks with max_chunk_bytes ${max}`);
}
