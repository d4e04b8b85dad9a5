import type { opal } from "@opal/protocol";
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

/** The reference model's prefill of `tokens`: what a correct device's KV is compared with. */
export function referenceOf(ctx: ConformanceContext, tokens: readonly number[]) {
  return ctx.conformanceModel.reference.prefill(tokens);
}
