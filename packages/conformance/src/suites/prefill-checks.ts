import { cacheByteLength, isQuantizedDtype, toFloat32, toHex } from "@opal/kv";
import { opal } from "@opal/protocol";
import type { CollectedKv } from "../collect-kv-stream";
import {
  assertConformance,
  assertNoViolations,
  type ConformanceContext,
} from "../conformance-test";
import { describeWireStatus } from "../wire-status";

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

/**
 * The baseline prefill as the tests other than `stream.canonical-order` read it. Its stream-rule
 * violations (order, CRCs, sizes) are `stream.canonical-order`'s failure, reported there once and
 * not again under every test that reads the same stream; such a test fails only when the baseline
 * is unusable (the call failed, or `accepted` or `completed` is missing), and otherwise checks its
 * own rule on the bytes received, with a note pointing at the stream's violations.
 */
export function assertBaseline(
  ctx: ConformanceContext,
  collected: CollectedKv,
): ReturnType<typeof assertCompleted> {
  if (collected.error || !collected.descriptor || !collected.completed || !collected.accepted)
    return assertCompleted(collected, "the baseline prefill");
  if (collected.violations.length > 0)
    ctx.note(
      `the baseline stream broke stream rules, reported under stream.canonical-order: ${collected.violations[0]}`,
    );
  return collected as ReturnType<typeof assertCompleted>;
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

const v1 = opal.device.v1;

/**
 * Every KV format the device declares, as prefill formats: each dtype × layout (quantised dtypes
 * without scales and with the first declared scheme, int8 with every declared scheme), then each
 * further declared block size in the default format. Never only the first one offered.
 */
export function declaredFormats(ctx: ConformanceContext): opal.device.v1.KvFormat.$Properties[] {
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
  for (const blockSizeTokens of ctx.capabilities.blockSizesTokens ?? []) {
    if (blockSizeTokens !== base.blockSizeTokens) formats.push({ ...base, blockSizeTokens });
  }
  return formats;
}

/** `dtype layout scale_scheme block` of a format, for messages. */
export function describeFormat(f: opal.device.v1.KvFormat.$Properties): string {
  return `${v1.KvDtype[f.dtype!]} ${v1.KvLayout[f.layout!]} ${v1.KvScaleScheme[f.scaleScheme!]} block ${f.blockSizeTokens}`;
}

/**
 * The size and identity rules of one completed prefill in `format`: the descriptor echoes the
 * format (`PF-12`), its `total_bytes` is the arithmetic of its shape (`PF-18`), `kv_total_bytes`
 * equals it and the bytes received (`PF-17`, `PF-26`), `kv_digest` matches the bytes (`PF-25`),
 * and `first_token_id` is inside the vocabulary (`PF-17`). Returns the violations.
 */
export function sizeViolations(
  ctx: ConformanceContext,
  format: opal.device.v1.KvFormat.$Properties,
  done: ReturnType<typeof assertCompleted>,
): string[] {
  const what = describeFormat(format);
  const problems: string[] = [];
  const got = done.accepted.descriptor ?? {};
  for (const field of ["dtype", "layout", "scaleScheme", "blockSizeTokens"] as const) {
    if (got[field] !== format[field])
      problems.push(
        `PF-12: ${what}: descriptor ${field} ${got[field]}, requested ${format[field]}`,
      );
  }
  const arithmetic = cacheByteLength(done.descriptor);
  const declared = Number(got.totalBytes ?? 0);
  if (declared !== arithmetic)
    problems.push(
      `PF-18: ${what}: descriptor total_bytes ${declared}, the shape gives ${arithmetic}`,
    );
  const total = Number(done.completed.kvTotalBytes ?? 0);
  if (total !== arithmetic || total !== done.receivedBytes)
    problems.push(
      `PF-17: ${what}: kv_total_bytes ${total}, received ${done.receivedBytes}, the shape gives ${arithmetic}`,
    );
  problems.push(...digestViolations(done, what));
  problems.push(...firstTokenViolations(ctx, done.completed.firstTokenId ?? 0, what));
  return [...problems, ...valueViolations(done, what)];
}

/**
 * `kv_digest` is the 16-byte XXH3-128 of the bytes received (`PF-25`); a digest of another length
 * is reported as such, not as a mismatch.
 */
export function digestViolations(done: CollectedKv, what: string): string[] {
  const bytes = done.completed?.kvDigest ?? new Uint8Array();
  if (bytes.byteLength !== 16)
    return [
      `PF-25: ${what}: kv_digest has ${bytes.byteLength} bytes, expected 16 (XXH3-128 of the cache bytes)`,
    ];
  const digest = toHex(bytes);
  return digest === done.digestHex
    ? []
    : [`PF-25: ${what}: kv_digest ${digest}, XXH3-128 of the bytes received ${done.digestHex}`];
}

/**
 * Values any device must get right whatever its weights: unquantised K and V finite (`PF-22`),
 * scales finite and positive (`PF-20`). Stops at the first of each part.
 */
function valueViolations(done: ReturnType<typeof assertCompleted>, what: string): string[] {
  const problems: string[] = [];
  const quantised = isQuantizedDtype(done.descriptor.dtype);
  for (const [layer, parts] of done.parts.entries()) {
    for (const [part, bytes] of Object.entries(parts)) {
      if (!bytes || (quantised && (part === "k" || part === "v"))) continue;
      const scale = part.endsWith("_scale");
      const values = toFloat32(bytes, scale ? "f32" : done.descriptor.dtype);
      const bad = values.findIndex((x) => !Number.isFinite(x) || (scale && !(x > 0)));
      if (bad >= 0)
        problems.push(
          `${scale ? "PF-20" : "PF-22"}: ${what}: layer ${layer} ${part} element ${bad} is ${values[bad]}`,
        );
    }
  }
  return problems;
}

/** `first_token_id` must be a token of the model: below `vocab_size` (`PF-17`). */
export function firstTokenViolations(
  ctx: ConformanceContext,
  token: number,
  what: string,
): string[] {
  const vocab = ctx.model?.info.vocabSize ?? 0;
  return token < vocab
    ? []
    : [`PF-17: ${what}: first_token_id ${token} is not below the model's vocab_size ${vocab}`];
}

/**
 * The reference model's prefill of `tokens`: what a correct device's KV is compared with. Memoised
 * per prompt for the run (a vendor's checkpoint may be a large model on the CPU).
 */
export function referenceOf(
  ctx: ConformanceContext,
  tokens: readonly number[],
): ReturnType<ConformanceContext["conformanceModel"]["reference"]["prefill"]> {
  const key = `reference:${tokens.join(",")}`;
  const cached = ctx.shared.get(key) as ReturnType<typeof referenceOf> | undefined;
  if (cached) return cached;
  const result = ctx.conformanceModel.reference.prefill(tokens);
  ctx.shared.set(key, result);
  return result;
}
