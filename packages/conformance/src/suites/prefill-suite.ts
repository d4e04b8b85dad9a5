import { createDeviceClient, startPrefill } from "@opal/client";
import { Code } from "@opal/core";
import { cacheByteLength, headCountOf, toHex } from "@opal/kv";
import { dtypeEnum, layoutEnum, opal, scaleSchemeEnum } from "@opal/protocol";
import { computeOpalBlockHashes } from "../block-hash-chain";
import type { CollectedKv } from "../collect-kv-stream";
import { compareKvWithReference } from "../compare-kv";
import {
  assertConformance,
  assertNoViolations,
  CORE,
  type ConformanceContext,
  type ConformanceTest,
  optional,
} from "../conformance-test";
import { describeWireStatus } from "../wire-status";
import { compareTokenRows } from "./kv-rows";
import { expectPrefillFailure } from "./validation-suite";

const v1 = opal.device.v1;
type PrefillRequest = opal.device.v1.PrefillRequest.$Properties;

/** Asserts a prefill ended OK after a valid stream; returns it with its descriptor. */
export function assertCompleted(
  collected: CollectedKv,
  what: string,
): Required<Pick<CollectedKv, "descriptor" | "completed" | "accepted">> & CollectedKv {
  if (collected.error) {
    assertConformance(
      false,
      `${what} failed: ${collected.status ? describeWireStatus(collected.status) : collected.error.message}${collected.violations.length ? `; ${collected.violations.join("; ")}` : ""}`,
    );
  }
  assertNoViolations(collected.violations, what);
  assertConformance(
    collected.descriptor && collected.completed && collected.accepted,
    `${what}: incomplete stream`,
  );
  return collected as Required<Pick<CollectedKv, "descriptor" | "completed" | "accepted">> &
    CollectedKv;
}

/** The baseline prefill of a run: 40 tokens, default format, 1,000-byte chunks (memoised). */
export async function baselinePrefill(
  ctx: ConformanceContext,
): Promise<{ request: PrefillRequest; collected: CollectedKv }> {
  const cached = ctx.shared.get("baseline") as
    | { request: PrefillRequest; collected: CollectedKv }
    | undefined;
  if (cached) return cached;
  const request = ctx.prefillRequest({
    maxChunkBytes: Math.min(1000, ctx.capabilities.maxChunkBytes ?? 1000),
  });
  const collected = await ctx.prefill(request);
  const value = { request, collected };
  if (!collected.error) ctx.shared.set("baseline", value);
  return value;
}

function referenceOf(ctx: ConformanceContext, tokens: readonly number[]) {
  return ctx.conformanceModel.reference.prefill(tokens);
}

/** Prefill correctness, stream rules and prefix consistency. */
export function toPrefillSuite(): ConformanceTest[] {
  return [
    {
      id: "stream.canonical-order",
      title:
        "One accepted, chunks in canonical order with contiguous offsets, valid CRC32C and sizes, one completed last",
      tag: CORE,
      spec: ["PF-10", "PF-13", "PF-14", "PF-15", "PF-28"],
      needs: ["model"],
      async run(ctx) {
        const { collected } = await baselinePrefill(ctx);
        const done = assertCompleted(collected, "the baseline prefill");
        ctx.note(`${done.chunkCount} chunks, ${done.receivedBytes} bytes`);
      },
    },
    {
      id: "stream.digest",
      title: "completed.kv_total_bytes and kv_digest match the bytes received",
      tag: CORE,
      spec: ["PF-17", "PF-25", "PF-26", "PF-18"],
      needs: ["model"],
      async run(ctx) {
        const done = assertCompleted(
          (await baselinePrefill(ctx)).collected,
          "the baseline prefill",
        );
        const total = Number(done.completed.kvTotalBytes ?? 0);
        assertConformance(
          total === done.receivedBytes,
          `PF-26: kv_total_bytes ${total}, received ${done.receivedBytes}`,
        );
        assertConformance(
          total === cacheByteLength(done.descriptor),
          `PF-17: kv_total_bytes ${total}, descriptor arithmetic ${cacheByteLength(done.descriptor)}`,
        );
        const digest = toHex(done.completed.kvDigest ?? new Uint8Array());
        assertConformance(
          digest === done.digestHex,
          `PF-25: kv_digest ${digest}, SHA-256 of the bytes received ${done.digestHex}`,
        );
      },
    },
    {
      id: "stream.descriptor",
      title: "The accepted descriptor matches the request, the model and the declared numerics",
      tag: CORE,
      spec: ["PF-12", "PF-18", "PF-35", "PF-40", "MD-2", "ID-8"],
      needs: ["model"],
      async run(ctx) {
        const { request, collected } = await baselinePrefill(ctx);
        const done = assertCompleted(collected, "the baseline prefill");
        const w = done.accepted.descriptor!;
        const m = ctx.model!.info;
        const f = request.kvFormat!;
        const problems: string[] = [];
        const eq = (what: string, got: unknown, want: unknown, rule = "PF-12") => {
          if (got !== want)
            problems.push(
              `${rule}: ${what} ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`,
            );
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
        if (
          (n.maxAbsError ?? 0) > (c.maxAbsError ?? 0) ||
          (n.maxRelError ?? 0) > (c.maxRelError ?? 0)
        ) {
          problems.push(
            `PF-40: descriptor bound (${n.maxAbsError}, ${n.maxRelError}) looser than the capabilities' (${c.maxAbsError}, ${c.maxRelError})`,
          );
        }
        if (n.bitExact && !c.bitExact)
          problems.push("PF-40: descriptor claims bit_exact, the capabilities do not");
        if (c.bitExact && !n.bitExact)
          problems.push("PF-40: capabilities claim bit_exact, the descriptor does not");
        assertConformance(problems.length === 0, problems.join("; "));
      },
    },
    {
      id: "stream.completed-fields",
      title: "accepted and completed carry consistent counts, timings, lease and handle",
      tag: CORE,
      spec: ["PF-11", "PF-17", "RT-2", "RT-8"],
      needs: ["model"],
      async run(ctx) {
        const { request, collected } = await baselinePrefill(ctx);
        const done = assertCompleted(collected, "the baseline prefill");
        const c = done.completed;
        const a = done.accepted;
        const problems: string[] = [];
        if (c.promptTokens !== request.promptTokenIds!.length)
          problems.push(
            `PF-17: prompt_tokens ${c.promptTokens}, sent ${request.promptTokenIds!.length}`,
          );
        if ((c.decoderPrefixTokens ?? 0) !== Number(a.descriptor?.tokenStart ?? 0))
          problems.push("PF-17: decoder_prefix_tokens differs from descriptor.token_start");
        const logprob = c.firstTokenLogprob ?? 0;
        if (!(Number.isFinite(logprob) && logprob <= 0))
          problems.push(`PF-17: first_token_logprob ${logprob} (must be finite and <= 0)`);
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
      },
    },
    {
      id: "stream.default-chunk-size",
      title: "With max_chunk_bytes 0 no chunk exceeds preferred_chunk_bytes",
      tag: CORE,
      spec: ["PF-14"],
      needs: ["model"],
      async run(ctx) {
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
      },
    },
    {
      id: "prefill.kv-matches-reference",
      title: "The KV of every layer matches the exact reference within the declared numerics bound",
      tag: CORE,
      spec: ["PF-19", "PF-23", "PF-36", "PF-37", "PF-38"],
      needs: ["conformance-weights"],
      async run(ctx) {
        const { request, collected } = await baselinePrefill(ctx);
        const done = assertCompleted(collected, "the baseline prefill");
        const reference = referenceOf(ctx, request.promptTokenIds!);
        const result = compareKvWithReference(done.descriptor, done.parts, reference.cache);
        assertNoViolations(result.violations);
        ctx.note(`${result.elements} elements, max |error| ${result.maxAbsError.toExponential(2)}`);
      },
    },
    {
      id: "prefill.first-token",
      title:
        "The greedy first token is the reference's (or within the declared error of its best logit)",
      tag: CORE,
      spec: ["PF-32", "PF-39", "PF-17"],
      needs: ["conformance-weights"],
      async run(ctx) {
        const { request, collected } = await baselinePrefill(ctx);
        const done = assertCompleted(collected, "the baseline prefill");
        const { logits } = referenceOf(ctx, request.promptTokenIds!);
        let best = 0;
        for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
        const token = done.completed.firstTokenId ?? 0;
        const n = done.descriptor.numerics;
        if (n.bitExact) {
          assertConformance(
            token === best,
            `PF-32: first token ${token}, reference greedy token ${best}`,
          );
        } else {
          const max = logits[best]!;
          const slack = n.maxAbsError + n.maxRelError * Math.abs(max) + 1e-5;
          assertConformance(
            token < logits.length && logits[token]! >= max - slack,
            `PF-39: first token ${token} has reference logit ${logits[token]}, best ${best} has ${max} (allowed slack ${slack})`,
          );
        }
      },
    },
    {
      id: "prefill.formats",
      title:
        "Every declared dtype and layout (with scales for quantised dtypes) gives the reference KV within bound",
      tag: CORE,
      spec: ["PF-18", "PF-19", "PF-20", "PF-21", "PF-22", "PF-37"],
      needs: ["conformance-weights"],
      timeoutMs: 120_000,
      async run(ctx) {
        const tokens = ctx.prompt(24, 3);
        const reference = referenceOf(ctx, tokens);
        const schemes = (ctx.capabilities.scaleSchemes ?? []).filter(
          (s) => s !== v1.KvScaleScheme.KV_SCALE_SCHEME_NONE,
        );
        const formats: opal.device.v1.KvFormat.$Properties[] = [];
        const base = ctx.prefillRequest().kvFormat!;
        for (const dtype of ctx.capabilities.dtypes ?? []) {
          for (const layout of ctx.capabilities.layouts ?? []) {
            const quantised = dtype >= v1.KvDtype.KV_DTYPE_FP8_E4M3FN;
            const list =
              dtype === v1.KvDtype.KV_DTYPE_INT8
                ? schemes
                : quantised
                  ? [v1.KvScaleScheme.KV_SCALE_SCHEME_NONE, ...schemes.slice(0, 1)]
                  : [v1.KvScaleScheme.KV_SCALE_SCHEME_NONE];
            for (const scaleScheme of list) formats.push({ ...base, dtype, layout, scaleScheme });
          }
        }
        for (const kvFormat of formats) {
          const what = `${v1.KvDtype[kvFormat.dtype!]} ${v1.KvLayout[kvFormat.layout!]} ${v1.KvScaleScheme[kvFormat.scaleScheme!]}`;
          const done = assertCompleted(
            await ctx.prefill(ctx.prefillRequest({ promptTokenIds: tokens, kvFormat })),
            what,
          );
          const result = compareKvWithReference(done.descriptor, done.parts, reference.cache);
          assertNoViolations(result.violations, what);
          const digest = toHex(done.completed.kvDigest ?? new Uint8Array());
          assertConformance(
            digest === done.digestHex,
            `PF-25: ${what}: kv_digest does not match the bytes`,
          );
        }
        ctx.note(`${formats.length} formats`);
      },
    },
    {
      id: "prefill.head-range",
      title: "A head_range slice carries exactly those heads of the reference KV",
      tag: CORE,
      spec: ["PF-12", "PF-24", "PF-46"],
      needs: ["conformance-weights"],
      async run(ctx) {
        const heads = ctx.model?.info.mha?.numKvHeads ?? 1;
        if (heads < 2) ctx.skip("the model has one KV head");
        const tokens = ctx.prompt(20, 5);
        const base = ctx.prefillRequest().kvFormat!;
        const done = assertCompleted(
          await ctx.prefill(
            ctx.prefillRequest({
              promptTokenIds: tokens,
              kvFormat: { ...base, headRange: { start: 1, count: heads - 1 } },
            }),
          ),
          "a head-range prefill",
        );
        assertConformance(
          done.descriptor.headRange.start === 1 && headCountOf(done.descriptor) === heads - 1,
          `PF-12: descriptor head_range ${JSON.stringify(done.descriptor.headRange)}, requested {1, ${heads - 1}}`,
        );
        assertNoViolations(
          compareKvWithReference(done.descriptor, done.parts, referenceOf(ctx, tokens).cache)
            .violations,
        );
      },
    },
    {
      id: "prefill.sdk-client",
      title: "The OPAL client SDK completes a prefill against the device and verifies it",
      tag: CORE,
      spec: ["PF-12", "PF-26", "VER-2"],
      needs: ["model"],
      async run(ctx) {
        const format = ctx.prefillRequest().kvFormat!;
        const device = createDeviceClient(ctx.target, {
          ...(ctx.token ? { token: ctx.token } : {}),
          ...(ctx.tls ? { tls: ctx.tls } : {}),
        });
        try {
          const run = startPrefill(
            device,
            {
              requestId: ctx.requestId("sdk"),
              modelId: ctx.model!.modelId,
              promptTokenIds: Uint32Array.from(ctx.prompt(33, 2)),
              kvFormat: {
                dtype: dtypeEnum.fromWire(format.dtype, "dtype"),
                layout: layoutEnum.fromWire(format.layout, "layout"),
                scaleScheme: scaleSchemeEnum.fromWire(format.scaleScheme, "scale_scheme"),
                blockSizeTokens: format.blockSizeTokens ?? 16,
              },
            },
            { timeoutMs: ctx.prefillTimeoutMs, signal: ctx.signal },
          );
          const outcome = await run.result;
          ctx.note(`${outcome.transfer.kvBytes} bytes verified by @opal/client`);
        } catch (error) {
          assertConformance(
            false,
            `PF-26: @opal/client rejected the prefill: ${(error as Error).message}`,
          );
        } finally {
          await device.close();
        }
      },
    },
    {
      id: "prefill.seeded-sampling",
      title:
        "SEEDED sampling gives a valid token, reproducible for the same seed on a bit-exact device",
      tag: optional("seeded-sampling"),
      spec: ["PF-33", "PF-34"],
      needs: ["model"],
      async run(ctx) {
        const tokens = ctx.prompt(24, 6);
        const sampling = {
          mode: v1.SamplingMode.SAMPLING_MODE_SEEDED,
          temperature: 0.8,
          topK: 20,
          seed: 42,
        };
        const a = assertCompleted(
          await ctx.prefill(ctx.prefillRequest({ promptTokenIds: tokens, sampling })),
          "a seeded prefill",
        );
        const b = assertCompleted(
          await ctx.prefill(ctx.prefillRequest({ promptTokenIds: tokens, sampling })),
          "the same seeded prefill again",
        );
        const vocab = ctx.model?.info.vocabSize ?? 0;
        assertConformance(
          (a.completed.firstTokenId ?? 0) < vocab,
          `PF-33: first token ${a.completed.firstTokenId} outside the vocabulary`,
        );
        if (a.descriptor.numerics.bitExact) {
          assertConformance(
            a.completed.firstTokenId === b.completed.firstTokenId,
            `PF-34: the same seed gave tokens ${a.completed.firstTokenId} and ${b.completed.firstTokenId}`,
          );
        }
      },
    },
    {
      id: "validation.seeded-temperature",
      title: "SEEDED sampling with temperature 0 fails INVALID_FIELD naming sampling.temperature",
      tag: optional("seeded-sampling"),
      spec: ["PF-1", "ERR-5"],
      needs: ["model"],
      async run(ctx) {
        const sampling = {
          mode: v1.SamplingMode.SAMPLING_MODE_SEEDED,
          temperature: 0,
          topK: 20,
          seed: 42,
        };
        await expectPrefillFailure(
          ctx,
          ctx.prefillRequest({ sampling }),
          {
            code: Code.INVALID_ARGUMENT,
            reasons: ["INVALID_FIELD"],
            field: "sampling.temperature",
            spec: "PF-1",
          },
          "SEEDED sampling with temperature 0",
        );
      },
    },
    {
      id: "prefix.consistent",
      title: "The KV of a prompt's first tokens equals the KV of prefilling those tokens alone",
      tag: CORE,
      spec: ["PF-19", "PF-23", "PF-34"],
      needs: ["model"],
      async run(ctx) {
        const tokens = ctx.prompt(48, 7);
        const full = assertCompleted(
          await ctx.prefill(ctx.prefillRequest({ promptTokenIds: tokens })),
          "the full prompt",
        );
        const head = assertCompleted(
          await ctx.prefill(ctx.prefillRequest({ promptTokenIds: tokens.slice(0, 20) })),
          "its first 20 tokens",
        );
        assertNoViolations(compareTokenRows(full, head, 0, 20, "PF-19"));
      },
    },
    {
      id: "prefix.decoder-prefix",
      title:
        "decoder_prefix.num_tokens skips exactly those tokens and sends the rest at their absolute positions",
      tag: optional("decoder-prefix"),
      spec: ["PH-8", "PH-10", "PH-12", "PF-12"],
      needs: ["model"],
      async run(ctx) {
        const tokens = ctx.prompt(40, 9);
        const full = assertCompleted(
          await ctx.prefill(ctx.prefillRequest({ promptTokenIds: tokens })),
          "the full prompt",
        );
        const part = assertCompleted(
          await ctx.prefill(
            ctx.prefillRequest({ promptTokenIds: tokens, decoderPrefix: { numTokens: 10 } }),
          ),
          "a prefill with decoder_prefix.num_tokens 10",
        );
        assertConformance(
          part.descriptor.tokenStart === 10 && part.descriptor.tokenCount === 30,
          `PH-10: token range ${part.descriptor.tokenStart}+${part.descriptor.tokenCount}, expected 10+30`,
        );
        assertConformance(
          (part.completed.decoderPrefixTokens ?? 0) === 10,
          `PH-10: completed.decoder_prefix_tokens ${part.completed.decoderPrefixTokens}`,
        );
        assertNoViolations(compareTokenRows(full, part, 10, 30, "PH-10"));
        await expectPrefillFailure(
          ctx,
          ctx.prefillRequest({ promptTokenIds: tokens, decoderPrefix: { numTokens: 40 } }),
          {
            code: Code.INVALID_ARGUMENT,
            reasons: ["INVALID_FIELD"],
            field: "decoder_prefix.num_tokens",
            spec: "PH-8",
          },
          "decoder_prefix.num_tokens equal to the prompt length",
        );
      },
    },
    {
      id: "prefix.block-hashes",
      title:
        "decoder_prefix.block_hashes (OPAL chain with cache_salt) skips the leading matching blocks only",
      tag: optional("decoder-prefix"),
      spec: ["PH-1", "PH-2", "PH-9", "PH-10"],
      needs: ["model"],
      async run(ctx) {
        const tokens = ctx.prompt(40, 11);
        const base = ctx.prefillRequest().kvFormat!;
        const B = base.blockSizeTokens ?? 16;
        const blocks = Math.floor((tokens.length - 1) / B);
        if (blocks < 1)
          ctx.skip(`block size ${B} leaves no full block in a ${tokens.length}-token prompt`);
        const salt = `conformance-${ctx.requestId("salt")}`;
        const hashes = computeOpalBlockHashes(tokens, B, salt);
        const all = assertCompleted(
          await ctx.prefill(
            ctx.prefillRequest({
              promptTokenIds: tokens,
              cacheSalt: salt,
              decoderPrefix: { blockHashes: hashes },
            }),
          ),
          "a prefill with matching block hashes",
        );
        assertConformance(
          all.descriptor.tokenStart === blocks * B,
          `PH-1/PH-9: with ${hashes.length} matching OPAL block hashes (B=${B}) the device skipped ${all.descriptor.tokenStart} tokens, expected ${blocks * B}`,
        );
        const wrong = hashes.map((h, i) => (i === 1 ? new Uint8Array(32) : h));
        const one = assertCompleted(
          await ctx.prefill(
            ctx.prefillRequest({
              promptTokenIds: tokens,
              cacheSalt: salt,
              decoderPrefix: { blockHashes: wrong },
            }),
          ),
          "a prefill whose second block hash differs",
        );
        assertConformance(
          one.descriptor.tokenStart === Math.min(1, blocks) * B,
          `PH-9: skipped ${one.descriptor.tokenStart} tokens, expected ${B} (first block only)`,
        );
        const other = assertCompleted(
          await ctx.prefill(
            ctx.prefillRequest({
              promptTokenIds: tokens,
              cacheSalt: `${salt}-other`,
              decoderPrefix: { blockHashes: hashes },
            }),
          ),
          "a prefill with another cache_salt",
        );
        assertConformance(
          other.descriptor.tokenStart === 0,
          `PH-2: hashes of another salt skipped ${other.descriptor.tokenStart} tokens`,
        );
      },
    },
    {
      id: "prefix.cache-hit",
      title:
        "Prefix-cache hits cover whole blocks, never the last token, give the same KV, and never cross salts",
      tag: optional("prefix-cache"),
      spec: ["PH-2", "PH-4", "PH-5"],
      needs: ["model"],
      async run(ctx) {
        const tokens = ctx.prompt(56, 13);
        const salt = `conformance-${ctx.requestId("pc")}`;
        const B = ctx.prefillRequest().kvFormat!.blockSizeTokens ?? 16;
        const first = assertCompleted(
          await ctx.prefill(ctx.prefillRequest({ promptTokenIds: tokens, cacheSalt: salt })),
          "the first prefill",
        );
        assertConformance(
          (first.completed.prefixCacheHitTokens ?? 0) === 0,
          `PH-2: a fresh salt reported ${first.completed.prefixCacheHitTokens} hit tokens`,
        );
        const second = assertCompleted(
          await ctx.prefill(ctx.prefillRequest({ promptTokenIds: tokens, cacheSalt: salt })),
          "the repeat",
        );
        const hits = second.completed.prefixCacheHitTokens ?? 0;
        assertConformance(
          hits % B === 0 || hits === tokens.length - 1,
          `PH-4: ${hits} hit tokens is not a whole number of ${B}-token blocks`,
        );
        assertConformance(
          hits < tokens.length,
          `PH-4: ${hits} hit tokens cover the last prompt token`,
        );
        assertNoViolations(compareTokenRows(first, second, 0, tokens.length, "PH-5"));
        const other = assertCompleted(
          await ctx.prefill(ctx.prefillRequest({ promptTokenIds: tokens, cacheSalt: `${salt}-b` })),
          "another salt",
        );
        assertConformance(
          (other.completed.prefixCacheHitTokens ?? 0) === 0,
          `PH-2: another salt reported ${other.completed.prefixCacheHitTokens} hit tokens`,
        );
        ctx.note(`repeat hit ${hits} of ${tokens.length} tokens`);
      },
    },
  ];
}
