import { createDeviceClient, startPrefill } from "@opal/client";
import { Code } from "@opal/core";
import { headCountOf } from "@opal/kv";
import { dtypeEnum, layoutEnum, opal, scaleSchemeEnum } from "@opal/protocol";
import { compareKvWithReference } from "../compare-kv";
import {
  assertConformance,
  assertNoViolations,
  CORE,
  type ConformanceContext,
  type ConformanceTest,
  optional,
} from "../conformance-test";
import { expectPrefillFailure } from "../expect-prefill-failure";
import {
  assertBaseline,
  assertCompleted,
  baselinePrefill,
  declaredFormats,
  describeFormat,
  firstTokenViolations,
  referenceOf,
  sizeViolations,
} from "./prefill-checks";

const v1 = opal.device.v1;

/** Prefill correctness against the reference model, formats, head ranges and sampling. */
export function toPrefillSuite(): ConformanceTest[] {
  return [
    {
      id: "prefill.kv-matches-reference",
      title: "The KV of every layer matches the exact reference within the declared numerics bound",
      tag: CORE,
      spec: ["PF-19", "PF-23", "PF-36", "PF-37", "PF-38"],
      needs: ["conformance-weights"],
      run: runPrefillKvMatchesReference,
    },
    {
      id: "prefill.first-token",
      title:
        "The greedy first token is the reference's (or within the declared error of its best logit)",
      tag: CORE,
      spec: ["PF-32", "PF-39", "PF-17"],
      needs: ["conformance-weights"],
      run: runPrefillFirstToken,
    },
    {
      id: "prefill.formats",
      title:
        "Every declared dtype, layout, scale scheme and block size gives the reference KV within bound, with exact sizes",
      tag: CORE,
      spec: ["PF-12", "PF-17", "PF-18", "PF-19", "PF-20", "PF-21", "PF-22", "PF-25", "PF-37"],
      needs: ["conformance-weights"],
      timeoutMs: 120_000,
      run: runPrefillFormats,
    },
    {
      id: "prefill.head-range",
      title: "A head_range slice carries exactly those heads of the reference KV",
      tag: CORE,
      spec: ["PF-12", "PF-24", "PF-46"],
      needs: ["conformance-weights"],
      run: runPrefillHeadRange,
    },
    {
      id: "prefill.sdk-client",
      title: "The OPAL client SDK completes a prefill against the device and verifies it",
      tag: CORE,
      spec: ["PF-12", "PF-26", "VER-2"],
      needs: ["model"],
      run: runPrefillSdkClient,
    },
    {
      id: "prefill.seeded-sampling",
      title:
        "SEEDED sampling gives a valid token, reproducible for the same seed on a bit-exact device",
      tag: optional("seeded-sampling"),
      spec: ["PF-33", "PF-34"],
      needs: ["model"],
      run: runPrefillSeededSampling,
    },
    {
      id: "validation.seeded-temperature",
      title: "SEEDED sampling with temperature 0 fails INVALID_FIELD naming sampling.temperature",
      tag: optional("seeded-sampling"),
      spec: ["PF-1", "ERR-5"],
      needs: ["model"],
      run: runValidationSeededTemperature,
    },
  ];
}

/**
 * `prefill.kv-matches-reference`: The KV of every layer matches the exact reference within the
 * declared numerics bound.
 */
async function runPrefillKvMatchesReference(ctx: ConformanceContext): Promise<void> {
  const { request, collected } = await baselinePrefill(ctx);
  const done = assertBaseline(ctx, collected);
  const reference = referenceOf(ctx, request.promptTokenIds!);
  const result = compareKvWithReference(done.descriptor, done.parts, reference.cache);
  assertNoViolations(result.violations);
  ctx.note(`${result.elements} elements, max |error| ${result.maxAbsError.toExponential(2)}`);
}

/**
 * `prefill.first-token`: The greedy first token is the reference's (or within the declared error of
 * its best logit).
 */
async function runPrefillFirstToken(ctx: ConformanceContext): Promise<void> {
  const { request, collected } = await baselinePrefill(ctx);
  const done = assertBaseline(ctx, collected);
  const { logits } = referenceOf(ctx, request.promptTokenIds!);
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  const token = done.completed.firstTokenId ?? 0;
  assertNoViolations(firstTokenViolations(ctx, token, "the baseline prefill"));
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
}

/**
 * `prefill.formats`: Every declared dtype, layout, scale scheme and block size gives the reference
 * KV within bound, with exact sizes.
 */
async function runPrefillFormats(ctx: ConformanceContext): Promise<void> {
  const tokens = ctx.prompt(24, 3);
  const reference = referenceOf(ctx, tokens);
  const formats = declaredFormats(ctx);
  for (const kvFormat of formats) {
    const what = describeFormat(kvFormat);
    const done = assertCompleted(
      await ctx.prefill(ctx.prefillRequest({ promptTokenIds: tokens, kvFormat })),
      what,
    );
    assertNoViolations(sizeViolations(ctx, kvFormat, done));
    const result = compareKvWithReference(done.descriptor, done.parts, reference.cache);
    assertNoViolations(result.violations, what);
  }
  ctx.note(`${formats.length} formats`);
}

/** `prefill.head-range`: A head_range slice carries exactly those heads of the reference KV. */
async function runPrefillHeadRange(ctx: ConformanceContext): Promise<void> {
  const heads = ctx.model?.info.mha?.numKvHeads ?? 1;
  if (heads < 2) ctx.notApplicable("the model has one KV head");
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
    compareKvWithReference(done.descriptor, done.parts, referenceOf(ctx, tokens).cache).violations,
  );
}

/**
 * `prefill.sdk-client`: The OPAL client SDK completes a prefill against the device and verifies it.
 */
async function runPrefillSdkClient(ctx: ConformanceContext): Promise<void> {
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
}

/**
 * `prefill.seeded-sampling`: SEEDED sampling gives a valid token, reproducible for the same seed on
 * a bit-exact device.
 */
async function runPrefillSeededSampling(ctx: ConformanceContext): Promise<void> {
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
}

/**
 * `validation.seeded-temperature`: SEEDED sampling with temperature 0 fails INVALID_FIELD naming
 * sampling.temperature.
 */
async function runValidationSeededTemperature(ctx: ConformanceContext): Promise<void> {
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
}
