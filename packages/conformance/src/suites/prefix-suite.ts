import { Code } from "@opal/core";
import { computeOpalBlockHashes } from "../block-hash-chain";
import {
  assertConformance,
  assertNoViolations,
  CORE,
  type ConformanceContext,
  type ConformanceTest,
  optional,
} from "../conformance-test";
import { expectPrefillFailure } from "../expect-prefill-failure";
import { compareTokenRows } from "./kv-rows";
import { assertCompleted } from "./prefill-checks";

/** Prefix consistency, decoder prefixes, block hashes and the prefix cache. */
export function toPrefixSuite(): ConformanceTest[] {
  return [
    {
      id: "prefix.consistent",
      title: "The KV of a prompt's first tokens equals the KV of prefilling those tokens alone",
      tag: CORE,
      spec: ["PF-19", "PF-23", "PF-34"],
      needs: ["model"],
      run: runPrefixConsistent,
    },
    {
      id: "prefix.decoder-prefix",
      title:
        "decoder_prefix.num_tokens skips exactly those tokens and sends the rest at their absolute positions",
      tag: optional("decoder-prefix"),
      spec: ["PH-8", "PH-10", "PH-12", "PF-12"],
      needs: ["model"],
      run: runPrefixDecoderPrefix,
    },
    {
      id: "prefix.block-hashes",
      title:
        "decoder_prefix.block_hashes (OPAL chain with cache_salt) skips the leading matching blocks only",
      tag: optional("decoder-prefix"),
      spec: ["PH-1", "PH-2", "PH-9", "PH-10"],
      needs: ["model"],
      run: runPrefixBlockHashes,
    },
    {
      id: "prefix.cache-hit",
      title:
        "Prefix-cache hits cover whole blocks, never the last token, give the same KV, and never cross salts",
      tag: optional("prefix-cache"),
      spec: ["PH-2", "PH-4", "PH-5"],
      needs: ["model"],
      run: runPrefixCacheHit,
    },
  ];
}

/**
 * `prefix.consistent`: The KV of a prompt's first tokens equals the KV of prefilling those tokens
 * alone.
 */
async function runPrefixConsistent(ctx: ConformanceContext): Promise<void> {
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
}

/**
 * `prefix.decoder-prefix`: decoder_prefix.num_tokens skips exactly those tokens and sends the rest
 * at their absolute positions.
 */
async function runPrefixDecoderPrefix(ctx: ConformanceContext): Promise<void> {
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
}

/**
 * `prefix.block-hashes`: decoder_prefix.block_hashes (OPAL chain with cache_salt) skips the leading
 * matching blocks only.
 */
async function runPrefixBlockHashes(ctx: ConformanceContext): Promise<void> {
  const tokens = ctx.prompt(40, 11);
  const base = ctx.prefillRequest().kvFormat!;
  const B = base.blockSizeTokens ?? 16;
  const blocks = Math.floor((tokens.length - 1) / B);
  if (blocks < 1)
    ctx.skip(`block size ${B} leaves no full block in a ${tokens.length}-token prompt`);
  const salt = `conformance-${ctx.requestId("salt")}`;
  const hashes = computeOpalBlockHashes(tokens, B, salt);
  /** Tokens the device skipped for these block hashes under `cacheSalt`. */
  const skipped = async (cacheSalt: string, blockHashes: Uint8Array[], what: string) => {
    const request = { promptTokenIds: tokens, cacheSalt, decoderPrefix: { blockHashes } };
    const done = assertCompleted(await ctx.prefill(ctx.prefillRequest(request)), what);
    return done.descriptor.tokenStart;
  };
  const all = await skipped(salt, hashes, "a prefill with matching block hashes");
  assertConformance(
    all === blocks * B,
    `PH-1/PH-9: with ${hashes.length} matching OPAL block hashes (B=${B}) the device skipped ${all} tokens, expected ${blocks * B}`,
  );
  const wrong = hashes.map((h, i) => (i === 1 ? new Uint8Array(32) : h));
  const one = await skipped(salt, wrong, "a prefill whose second block hash differs");
  assertConformance(
    one === Math.min(1, blocks) * B,
    `PH-9: skipped ${one} tokens, expected ${B} (first block only)`,
  );
  const other = await skipped(`${salt}-other`, hashes, "a prefill with another cache_salt");
  assertConformance(other === 0, `PH-2: hashes of another salt skipped ${other} tokens`);
}

/**
 * `prefix.cache-hit`: Prefix-cache hits cover whole blocks, never the last token, give the same KV,
 * and never cross salts.
 */
async function runPrefixCacheHit(ctx: ConformanceContext): Promise<void> {
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
  assertConformance(hits < tokens.length, `PH-4: ${hits} hit tokens cover the last prompt token`);
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
}
