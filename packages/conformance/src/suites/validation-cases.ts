import { Code } from "@opal/core";
import { opal } from "@opal/protocol";
import type { ConformanceContext } from "../conformance-test";
import type { ExpectedStatus } from "../expect-status";

const v1 = opal.device.v1;
type PrefillRequest = opal.device.v1.PrefillRequest.$Properties;

const invalid = (field: string, reasons = ["INVALID_FIELD"]): ExpectedStatus => ({
  code: Code.INVALID_ARGUMENT,
  reasons,
  field,
  spec: "PF-1",
});

/** A block size the device does not declare (one above the largest it declares). */
export function undeclaredBlockSize(ctx: ConformanceContext): number {
  const declared = ctx.capabilities.blockSizesTokens ?? [];
  let size = Math.max(0, ...declared) + 1;
  while (declared.includes(size)) size++;
  return size;
}

/** One malformed prefill request and the status it must fail with. */
interface ValidationCase {
  readonly id: string;
  readonly title: string;
  readonly spec: readonly string[];
  readonly request: (ctx: ConformanceContext) => PrefillRequest;
  readonly expected: (ctx: ConformanceContext) => ExpectedStatus;
}

/** The malformed prefill requests of the validation suite, each run as its own test. */
export const VALIDATION_CASES: readonly ValidationCase[] = [
  {
    id: "validation.request-id-missing",
    title: "A prefill without request_id fails INVALID_ARGUMENT INVALID_FIELD naming request_id",
    spec: ["PF-1", "PF-2", "ERR-5"],
    request: (ctx) => ctx.prefillRequest({ requestId: "" }),
    expected: () => invalid("request_id"),
  },
  {
    id: "validation.request-id-malformed",
    title: "A request_id with a space or over 128 characters fails INVALID_FIELD",
    spec: ["PF-1"],
    request: (ctx) => ctx.prefillRequest({ requestId: `bad id ${"x".repeat(130)}` }),
    expected: () => invalid("request_id"),
  },
  {
    id: "validation.model-id-missing",
    title: "A prefill without model_id fails INVALID_FIELD naming model_id",
    spec: ["PF-1", "ERR-5"],
    request: (ctx) => ctx.prefillRequest({ modelId: "" }),
    expected: () => invalid("model_id"),
  },
  {
    id: "validation.prompt-empty",
    title: "A prefill without prompt tokens fails PROMPT_EMPTY naming prompt_token_ids",
    spec: ["PF-1", "ERR-5"],
    request: (ctx) => ctx.prefillRequest({ promptTokenIds: [] }),
    expected: () => invalid("prompt_token_ids", ["PROMPT_EMPTY"]),
  },
  {
    id: "validation.kv-format-missing",
    title: "A prefill without kv_format fails INVALID_FIELD naming kv_format",
    spec: ["PF-1", "ERR-5"],
    request: (ctx) => ctx.prefillRequest({ kvFormat: null }),
    expected: () => invalid("kv_format"),
  },
  {
    id: "validation.model-not-loaded",
    title: "A prefill of an unknown model fails FAILED_PRECONDITION MODEL_NOT_LOADED",
    spec: ["PF-1", "ERR-3"],
    request: (ctx) => ctx.prefillRequest({ modelId: "opal-conformance/no-such-model" }),
    expected: () => ({
      code: Code.FAILED_PRECONDITION,
      reasons: ["MODEL_NOT_LOADED"],
      spec: "PF-1",
    }),
  },
  {
    id: "validation.prompt-too-long",
    title:
      "A prompt one token over min(max_prompt_tokens, max_position_embeddings) fails PROMPT_TOO_LONG",
    spec: ["PF-1", "ID-7", "PF-3"],
    request: (ctx) => {
      const limit = Math.min(
        ctx.capabilities.maxPromptTokens ?? 1,
        ctx.model?.info.maxPositionEmbeddings || Number.POSITIVE_INFINITY,
      );
      return ctx.prefillRequest({ promptTokenIds: ctx.prompt(limit + 1) });
    },
    expected: () => invalid("prompt_token_ids", ["PROMPT_TOO_LONG"]),
  },
  {
    id: "validation.token-out-of-range",
    title: "A token id equal to vocab_size fails TOKEN_OUT_OF_RANGE naming prompt_token_ids[i]",
    spec: ["PF-1", "GEN-6"],
    request: (ctx) =>
      ctx.prefillRequest({ promptTokenIds: [1, ctx.model?.info.vocabSize ?? 0, 2] }),
    expected: () => invalid("prompt_token_ids[1]", ["TOKEN_OUT_OF_RANGE"]),
  },
  {
    id: "validation.dtype-unspecified",
    title: "kv_format.dtype UNSPECIFIED fails INVALID_FIELD naming kv_format.dtype",
    spec: ["GEN-3", "PF-1"],
    request: (ctx) => {
      const r = ctx.prefillRequest();
      return { ...r, kvFormat: { ...r.kvFormat, dtype: v1.KvDtype.KV_DTYPE_UNSPECIFIED } };
    },
    expected: () => invalid("kv_format.dtype"),
  },
  {
    id: "validation.layout-unspecified",
    title: "kv_format.layout UNSPECIFIED fails INVALID_FIELD naming kv_format.layout",
    spec: ["GEN-3", "PF-1"],
    request: (ctx) => {
      const r = ctx.prefillRequest();
      return { ...r, kvFormat: { ...r.kvFormat, layout: v1.KvLayout.KV_LAYOUT_UNSPECIFIED } };
    },
    expected: () => invalid("kv_format.layout"),
  },
  {
    id: "validation.scale-scheme-unspecified",
    title: "kv_format.scale_scheme UNSPECIFIED fails INVALID_FIELD naming kv_format.scale_scheme",
    spec: ["GEN-3", "PF-1"],
    request: (ctx) => {
      const r = ctx.prefillRequest();
      return {
        ...r,
        kvFormat: { ...r.kvFormat, scaleScheme: v1.KvScaleScheme.KV_SCALE_SCHEME_UNSPECIFIED },
      };
    },
    expected: () => invalid("kv_format.scale_scheme"),
  },
  {
    id: "validation.sampling-mode-unspecified",
    title: "sampling present with mode UNSPECIFIED fails INVALID_FIELD naming sampling.mode",
    spec: ["GEN-3", "PF-1"],
    request: (ctx) =>
      ctx.prefillRequest({ sampling: { mode: v1.SamplingMode.SAMPLING_MODE_UNSPECIFIED } }),
    expected: () => invalid("sampling.mode"),
  },
  {
    id: "validation.dtype-unknown",
    title: "An unknown kv_format.dtype number fails UNSUPPORTED_DTYPE",
    spec: ["GEN-3", "PF-1"],
    request: (ctx) => {
      const r = ctx.prefillRequest();
      return { ...r, kvFormat: { ...r.kvFormat, dtype: 99 as opal.device.v1.KvDtype } };
    },
    expected: () => invalid("kv_format.dtype", ["UNSUPPORTED_DTYPE"]),
  },
  {
    id: "validation.block-size-unsupported",
    title:
      "An undeclared block size fails UNSUPPORTED_BLOCK_SIZE naming kv_format.block_size_tokens",
    spec: ["PF-1", "ID-7"],
    request: (ctx) => {
      const r = ctx.prefillRequest();
      return { ...r, kvFormat: { ...r.kvFormat, blockSizeTokens: undeclaredBlockSize(ctx) } };
    },
    expected: () => invalid("kv_format.block_size_tokens", ["UNSUPPORTED_BLOCK_SIZE"]),
  },
  {
    id: "validation.head-range-invalid",
    title: "A head range past num_kv_heads fails HEAD_RANGE_INVALID",
    spec: ["PF-1"],
    request: (ctx) => {
      const r = ctx.prefillRequest();
      const heads = ctx.model?.info.mha?.numKvHeads ?? 1;
      return { ...r, kvFormat: { ...r.kvFormat, headRange: { start: heads, count: 1 } } };
    },
    expected: () => invalid("kv_format.head_range", ["HEAD_RANGE_INVALID"]),
  },
  {
    id: "validation.max-chunk-too-large",
    title: "max_chunk_bytes above the declared maximum fails INVALID_FIELD naming max_chunk_bytes",
    spec: ["PF-1", "PF-14", "ID-7"],
    request: (ctx) =>
      ctx.prefillRequest({ maxChunkBytes: (ctx.capabilities.maxChunkBytes ?? 0) + 1 }),
    expected: () => invalid("max_chunk_bytes"),
  },
  {
    id: "validation.retention-limit",
    title:
      "retention_seconds above the maximum fails RETENTION_LIMIT_EXCEEDED without RetryInfo (UNSUPPORTED_FEATURE without retention)",
    spec: ["RT-1", "ERR-4", "PF-1"],
    request: (ctx) =>
      ctx.prefillRequest({
        retentionSeconds: (ctx.capabilities.retention?.maxRetentionSeconds ?? 0) + 1,
      }),
    expected: (ctx) =>
      (ctx.capabilities.retention?.maxRetentionSeconds ?? 0) > 0
        ? {
            code: Code.RESOURCE_EXHAUSTED,
            reasons: ["RETENTION_LIMIT_EXCEEDED"],
            noRetryInfo: true,
            spec: "RT-1",
          }
        : {
            code: Code.UNIMPLEMENTED,
            reasons: ["UNSUPPORTED_FEATURE"],
            field: "retention_seconds",
            spec: "RT-1",
          },
  },
];
