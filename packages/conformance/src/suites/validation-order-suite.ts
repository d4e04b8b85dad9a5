import { Code, OpalError } from "@opal/core";
import { opal } from "@opal/protocol";
import {
  assertConformance,
  CORE,
  type ConformanceContext,
  type ConformanceTest,
} from "../conformance-test";
import { expectPrefillFailure } from "../expect-prefill-failure";
import type { ExpectedStatus } from "../expect-status";
import { undeclaredBlockSize } from "./validation-cases";

const v1 = opal.device.v1;
type PrefillRequest = opal.device.v1.PrefillRequest.$Properties;

/** A request that fails two checks of `PF-1` stage 4, and the status of the earlier one. */
interface OrderCase {
  readonly what: string;
  readonly request: (ctx: ConformanceContext) => PrefillRequest;
  readonly expected: ExpectedStatus;
}

const invalid = (field: string, reason = "INVALID_FIELD"): ExpectedStatus => ({
  code: Code.INVALID_ARGUMENT,
  reasons: [reason],
  field,
  spec: "PF-1",
});
const notLoaded: ExpectedStatus = {
  code: Code.FAILED_PRECONDITION,
  reasons: ["MODEL_NOT_LOADED"],
  spec: "PF-1",
};

const withFormat = (
  ctx: ConformanceContext,
  format: Partial<opal.device.v1.KvFormat.$Properties>,
) => {
  const r = ctx.prefillRequest();
  return { ...r, kvFormat: { ...r.kvFormat, ...format } };
};
const outOfRange = (ctx: ConformanceContext) => [1, ctx.model?.info.vocabSize ?? 0, 2];
const NO_MODEL = "opal-conformance/no-such-model";

/** Pairs of checks a device makes itself on the decoded request. */
const ORDER_CASES: readonly OrderCase[] = [
  {
    what: "an unloaded model and an undeclared block size",
    request: (ctx) => ({
      ...withFormat(ctx, { blockSizeTokens: undeclaredBlockSize(ctx) }),
      modelId: NO_MODEL,
    }),
    expected: notLoaded,
  },
  {
    what: "a prompt over the limit and an out-of-range token in it",
    request: (ctx) => {
      const limit = Math.min(
        ctx.capabilities.maxPromptTokens ?? 1,
        ctx.model?.info.maxPositionEmbeddings || Number.POSITIVE_INFINITY,
      );
      const tokens = ctx.prompt(limit + 1);
      tokens[1] = ctx.model?.info.vocabSize ?? 0;
      return ctx.prefillRequest({ promptTokenIds: tokens });
    },
    expected: invalid("prompt_token_ids", "PROMPT_TOO_LONG"),
  },
  {
    what: "an out-of-range token and an undeclared block size",
    request: (ctx) => ({
      ...withFormat(ctx, { blockSizeTokens: undeclaredBlockSize(ctx) }),
      promptTokenIds: outOfRange(ctx),
    }),
    expected: invalid("prompt_token_ids[1]", "TOKEN_OUT_OF_RANGE"),
  },
  {
    what: "a head range past num_kv_heads and max_chunk_bytes above the maximum",
    request: (ctx) => ({
      ...withFormat(ctx, { headRange: { start: ctx.model?.info.mha?.numKvHeads ?? 1, count: 1 } }),
      maxChunkBytes: (ctx.capabilities.maxChunkBytes ?? 0) + 1,
    }),
    expected: invalid("kv_format.head_range", "HEAD_RANGE_INVALID"),
  },
  {
    what: "max_chunk_bytes above the maximum and retention_seconds above the maximum",
    request: (ctx) =>
      ctx.prefillRequest({
        maxChunkBytes: (ctx.capabilities.maxChunkBytes ?? 0) + 1,
        retentionSeconds: (ctx.capabilities.retention?.maxRetentionSeconds ?? 0) + 1,
      }),
    expected: invalid("max_chunk_bytes"),
  },
];

/** Pairs where the later check is of `kv_format` or an enum: its decoding must not come first. */
const ENUM_ORDER_CASES: readonly OrderCase[] = [
  {
    what: "no request_id and no kv_format",
    request: (ctx) => ctx.prefillRequest({ requestId: "", kvFormat: null }),
    expected: invalid("request_id"),
  },
  {
    what: "no prompt tokens and dtype UNSPECIFIED",
    request: (ctx) => ({ ...withFormat(ctx, { dtype: 0 }), promptTokenIds: [] }),
    expected: invalid("prompt_token_ids", "PROMPT_EMPTY"),
  },
  {
    what: "an unloaded model and layout UNSPECIFIED",
    request: (ctx) => ({ ...withFormat(ctx, { layout: 0 }), modelId: NO_MODEL }),
    expected: notLoaded,
  },
  {
    what: "an out-of-range token and an unknown dtype number",
    request: (ctx) => ({
      ...withFormat(ctx, { dtype: 99 as opal.device.v1.KvDtype }),
      promptTokenIds: outOfRange(ctx),
    }),
    expected: invalid("prompt_token_ids[1]", "TOKEN_OUT_OF_RANGE"),
  },
  {
    what: "no request_id and sampling mode UNSPECIFIED",
    request: (ctx) =>
      ctx.prefillRequest({
        requestId: "",
        sampling: { mode: v1.SamplingMode.SAMPLING_MODE_UNSPECIFIED },
      }),
    expected: invalid("request_id"),
  },
];

/** Runs every case and fails with all the mismatches. */
async function checkOrder(ctx: ConformanceContext, cases: readonly OrderCase[]): Promise<void> {
  const problems: string[] = [];
  for (const c of cases) {
    try {
      await expectPrefillFailure(ctx, c.request(ctx), c.expected, c.what);
    } catch (error) {
      problems.push(error instanceof OpalError ? error.rawMessage : String(error));
    }
  }
  assertConformance(problems.length === 0, problems.join("; "));
  ctx.note(`${cases.length} requests, each failing two checks`);
}

/** `PF-1` order: a request failing several checks gets the error of the first. */
export function toValidationOrderSuite(): ConformanceTest[] {
  return [
    {
      id: "validation.order",
      title: "A request failing two checks of PF-1 stage 4 fails with the earlier one",
      tag: CORE,
      spec: ["PF-1", "ERR-3"],
      needs: ["model"],
      run: (ctx) => checkOrder(ctx, ORDER_CASES),
    },
    {
      id: "validation.order-enums",
      title:
        "A missing kv_format or an UNSPECIFIED or unknown enum is reported only after the checks PF-1 puts before it",
      tag: CORE,
      spec: ["PF-1", "GEN-3"],
      needs: ["model"],
      run: (ctx) => checkOrder(ctx, ENUM_ORDER_CASES),
    },
  ];
}
