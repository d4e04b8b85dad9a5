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
import { expectPrefillFailure } from "../expect-prefill-failure";
import { drain, expectFailure } from "../expect-status";
import { VALIDATION_CASES } from "./validation-cases";

const v1 = opal.device.v1;

/** Appends a protobuf field the schema does not define (number 1000, a string) to `bytes`. */
function withUnknownField(bytes: Uint8Array): Uint8Array {
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

/** Request validation (`PF-1`, `GEN-3`, `GEN-4`) and the shape of every error (`ERR-2`…`ERR-5`). */
export function toValidationSuite(): ConformanceTest[] {
  const cases: ConformanceTest[] = VALIDATION_CASES.map((c) => ({
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
      run: runValidationUndeclaredFeatures,
    },
    {
      id: "validation.unknown-fields",
      title: "Requests with unknown fields are served as if the fields were absent",
      tag: CORE,
      spec: ["GEN-4", "VER-4"],
      needs: ["model"],
      run: runValidationUnknownFields,
    },
    {
      id: "validation.unpacked-token-ids",
      title: "prompt_token_ids in the unpacked encoding are accepted",
      tag: CORE,
      spec: ["GEN-2"],
      needs: ["model"],
      run: runValidationUnpackedTokenIds,
    },
    {
      id: "errors.other-rpcs",
      title:
        "Malformed LoadModel, UnloadModel, FetchKv and ReleaseKv requests fail with documented, well-formed statuses",
      tag: CORE,
      spec: ["ERR-2", "ERR-3", "ERR-5", "MD-5", "RT-17"],
      run: runErrorsOtherRpcs,
    },
  ];
}

/**
 * `validation.undeclared-features`: Each optional feature the device does not declare fails
 * UNIMPLEMENTED UNSUPPORTED_FEATURE.
 */
async function runValidationUndeclaredFeatures(ctx: ConformanceContext): Promise<void> {
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
  if (checks.length === 0) ctx.notApplicable("the device declares every optional prefill feature");
  for (const [field, request] of checks) {
    await expectPrefillFailure(
      ctx,
      request,
      { code: Code.UNIMPLEMENTED, reasons: ["UNSUPPORTED_FEATURE"], spec: "PF-1" },
      `undeclared ${field}`,
    );
  }
  ctx.note(`checked: ${checks.map(([f]) => f).join(", ")}`);
}

/**
 * `validation.unknown-fields`: Requests with unknown fields are served as if the fields were
 * absent.
 */
async function runValidationUnknownFields(ctx: ConformanceContext): Promise<void> {
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
}

/** `validation.unpacked-token-ids`: prompt_token_ids in the unpacked encoding are accepted. */
async function runValidationUnpackedTokenIds(ctx: ConformanceContext): Promise<void> {
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
}

/**
 * `errors.other-rpcs`: Malformed LoadModel, UnloadModel, FetchKv and ReleaseKv requests fail with
 * documented, well-formed statuses.
 */
async function runErrorsOtherRpcs(ctx: ConformanceContext): Promise<void> {
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
  // RT-11: the handle's own check comes first, with or without retention.
  await expectFailure(
    () => drain(ctx.a.stream("fetchKv", { kvHandle: "" }, { timeoutMs: 10_000 })),
    {
      code: Code.INVALID_ARGUMENT,
      reasons: ["INVALID_FIELD"],
      field: "kv_handle",
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
}
