import { Code } from "@opal/core";
import { opal } from "@opal/protocol";
import { collectKvStream } from "../collect-kv-stream";
import {
  assertConformance,
  assertNoViolations,
  CORE,
  type ConformanceContext,
  type ConformanceTest,
} from "../conformance-test";
import { drain, type ExpectedStatus, expectFailure } from "../expect-status";

const v1 = opal.device.v1;
type PrefillRequest = opal.device.v1.PrefillRequest.$Properties;

/** Sends `request` and asserts the stream fails before any message as `expected`. */
export function expectPrefillFailure(
  ctx: ConformanceContext,
  request: PrefillRequest,
  expected: ExpectedStatus,
  what: string,
) {
  return expectFailure(
    () =>
      drain(
        ctx.a.stream("prefill", request, { timeoutMs: ctx.prefillTimeoutMs, signal: ctx.signal }),
      ),
    expected,
    what,
  );
}

/** Appends a protobuf field the schema does not define (number 1000, a string) to `bytes`. */
export function withUnknownField(bytes: Uint8Array): Uint8Array {
  // Tag = (1000 << 3) | 2 = 8002 as a varint: 0xc2 0x3e; then length 7 and "opal-x1".
  const extra = Uint8Array.of(0xc2, 0x3e, 7, ...new TextEncoder().encode("opal-x1"));
  const out = new Uint8Array(bytes.byteLength + extra.byteLength);
  out.set(bytes);
  out.set(extra, bytes.byteLength);
  return out;
}

function varint(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return out;
}

const invalid = (field: string, reasons = ["INVALID_FIELD"]): ExpectedStatus => ({
  code: Code.INVALID_ARGUMENT,
  reasons,
  field,
  spec: "PF-1",
});

interface Case {
  readonly id: string;
  readonly title: string;
  readonly spec: readonly string[];
  readonly request: (ctx: ConformanceContext) => PrefillRequest;
  readonly expected: (ctx: ConformanceContext) => ExpectedStatus;
}

const CASES: readonly Case[] = [
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
      const declared = ctx.capabilities.blockSizesTokens ?? [];
      let size = Math.max(0, ...declared) + 1;
      while (declared.includes(size)) size++;
      return { ...r, kvFormat: { ...r.kvFormat, blockSizeTokens: size } };
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

/** Request validation (`PF-1`, `GEN-3`, `GEN-4`) and the shape of every error (`ERR-2`…`ERR-5`). */
export function toValidationSuite(): ConformanceTest[] {
  const cases: ConformanceTest[] = CASES.map((c) => ({
    id: c.id,
    title: c.title,
    tag: CORE,
    spec: [...new Set([...c.spec, "ERR-2", "ERR-3"])],
    needs: ["model"],
    async run(ctx) {
      await expectPrefillFailure(ctx, c.request(ctx), c.expected(ctx), c.id);
    },
  }));
  return [
    ...cases,
    {
      id: "validation.undeclared-features",
      title:
        "Each optional feature the device does not declare fails UNIMPLEMENTED UNSUPPORTED_FEATURE",
      tag: CORE,
      spec: ["PF-1", "PF-41", "PH-8", "ERR-5"],
      needs: ["model"],
      async run(ctx) {
        const f = ctx.capabilities.features ?? {};
        const planes = ctx.capabilities.dataPlanes ?? [];
        const checks: [string, opal.device.v1.PrefillRequest.$Properties][] = [];
        if (!f.push) {
          checks.push([
            "push_target",
            ctx.prefillRequest({ pushTarget: { address: "127.0.0.1:9", transferId: "t-1" } }),
          ]);
        }
        if (!f.decoderPrefix)
          checks.push(["decoder_prefix", ctx.prefillRequest({ decoderPrefix: { numTokens: 4 } })]);
        if (!f.seededSampling) {
          checks.push([
            "sampling",
            ctx.prefillRequest({
              sampling: { mode: v1.SamplingMode.SAMPLING_MODE_SEEDED, temperature: 1, seed: 7 },
            }),
          ]);
        }
        if (!planes.includes(v1.DataPlaneKind.DATA_PLANE_KIND_SHARED_MEMORY)) {
          checks.push([
            "data_plane",
            ctx.prefillRequest({
              dataPlane: { sharedMemory: { name: "/opal-conformance", lengthBytes: 1 << 20 } },
            }),
          ]);
        }
        if (!planes.includes(v1.DataPlaneKind.DATA_PLANE_KIND_TRANSPORT)) {
          checks.push([
            "data_plane (transport)",
            ctx.prefillRequest({
              dataPlane: { transport: { kind: "opal-conformance", descriptor: Uint8Array.of(1) } },
            }),
          ]);
        }
        if (checks.length === 0) ctx.skip("the device declares every optional prefill feature");
        for (const [field, request] of checks) {
          await expectPrefillFailure(
            ctx,
            request,
            { code: Code.UNIMPLEMENTED, reasons: ["UNSUPPORTED_FEATURE"], spec: "PF-1" },
            `undeclared ${field}`,
          );
        }
        ctx.note(`checked: ${checks.map(([f]) => f).join(", ")}`);
      },
    },
    {
      id: "validation.unknown-fields",
      title: "Requests with unknown fields are served as if the fields were absent",
      tag: CORE,
      spec: ["GEN-4", "VER-4"],
      needs: ["model"],
      async run(ctx) {
        const info = await ctx.a.unaryBytes("getInfo", withUnknownField(new Uint8Array()));
        assertConformance(
          info.protocolVersion,
          "GEN-4: GetInfo with an unknown field returned no protocol_version",
        );
        const request = ctx.prefillRequest();
        const bytes = withUnknownField(v1.PrefillRequest.encode(request).finish());
        const collected = await collectKvStream(
          ctx.a.streamBytes("prefill", bytes, {
            timeoutMs: ctx.prefillTimeoutMs,
            signal: ctx.signal,
          }),
          { chunkBytes: ctx.capabilities.preferredChunkBytes ?? 1 },
        );
        assertConformance(
          !collected.error,
          `GEN-4: a prefill with an unknown field failed: ${collected.error?.message}`,
        );
        assertNoViolations(collected.violations);
      },
    },
    {
      id: "validation.unpacked-token-ids",
      title: "prompt_token_ids in the unpacked encoding are accepted",
      tag: CORE,
      spec: ["GEN-2"],
      needs: ["model"],
      async run(ctx) {
        const tokens = ctx.prompt(12);
        const request = ctx.prefillRequest({ promptTokenIds: [] });
        const head = v1.PrefillRequest.encode(request).finish();
        const tail = tokens.flatMap((t) => [0x18, ...varint(t)]); // field 3, wire type 0, one per token
        const bytes = Uint8Array.from([...head, ...tail]);
        const collected = await collectKvStream(
          ctx.a.streamBytes("prefill", bytes, {
            timeoutMs: ctx.prefillTimeoutMs,
            signal: ctx.signal,
          }),
          { chunkBytes: ctx.capabilities.preferredChunkBytes ?? 1 },
        );
        assertConformance(
          !collected.error,
          `GEN-2: unpacked prompt_token_ids failed: ${collected.error?.message}`,
        );
        assertConformance(
          collected.completed?.promptTokens === tokens.length,
          `GEN-2: completed.prompt_tokens ${collected.completed?.promptTokens}, sent ${tokens.length}`,
        );
      },
    },
    {
      id: "errors.other-rpcs",
      title:
        "Malformed LoadModel, UnloadModel, FetchKv and ReleaseKv requests fail with documented, well-formed statuses",
      tag: CORE,
      spec: ["ERR-2", "ERR-3", "ERR-5", "MD-5", "RT-17"],
      async run(ctx) {
        await expectFailure(
          () => ctx.a.unary("unloadModel", { modelId: "" }),
          {
            code: Code.INVALID_ARGUMENT,
            reasons: ["INVALID_FIELD"],
            field: "model_id",
            spec: "ERR-5",
          },
          "UnloadModel with an empty model_id",
        );
        await expectFailure(
          () => ctx.a.unary("releaseKv", { kvHandle: "" }),
          {
            code: Code.INVALID_ARGUMENT,
            reasons: ["INVALID_FIELD"],
            field: "kv_handle",
            spec: "RT-17",
          },
          "ReleaseKv with an empty kv_handle",
        );
        const retention = (ctx.capabilities.retention?.maxRetentionSeconds ?? 0) > 0;
        await expectFailure(
          () => drain(ctx.a.stream("fetchKv", { kvHandle: "" }, { timeoutMs: 10_000 })),
          retention
            ? {
                code: Code.INVALID_ARGUMENT,
                reasons: ["INVALID_FIELD"],
                field: "kv_handle",
                spec: "RT-11",
              }
            : {
                code: Code.UNIMPLEMENTED,
                reasons: ["UNSUPPORTED_FEATURE", "INVALID_FIELD"],
                spec: "RT-11",
              },
          "FetchKv with an empty kv_handle",
        );
        await expectFailure(
          () => ctx.a.loadModel([{ weightsChunk: Uint8Array.of(1, 2, 3) }]),
          {
            code: Code.INVALID_ARGUMENT,
            reasons: ["INVALID_FIELD"],
            field: "header",
            spec: "MD-5",
          },
          "LoadModel whose first message is not a header",
        );
        await expectFailure(
          () =>
            ctx.a.loadModel([
              { header: { modelId: "bad id!", configJson: "{}", weightsByteLength: 1 } },
              { weightsChunk: Uint8Array.of(0) },
            ]),
          { code: Code.INVALID_ARGUMENT, reasons: ["INVALID_FIELD"], spec: "MD-5" },
          "LoadModel with an invalid model_id",
        );
      },
    },
  ];
}
