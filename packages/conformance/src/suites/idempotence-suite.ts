import { Code } from "@opal/core";
import { toHex } from "@opal/kv";
import {
  assertConformance,
  CORE,
  type ConformanceContext,
  type ConformanceTest,
  optional,
} from "../conformance-test";
import { drain, expectFailure } from "../expect-status";
import { describeWireStatus } from "../wire-status";
import { assertHeldAccepted, connectSlowReader, startHeldPrefill } from "./held-prefill";
import { assertCompleted } from "./prefill-checks";
import { descriptorHex, retainedPrefill } from "./retention-checks";

/** request_id idempotence: conflicts, superseding a running call, replays. */
export function toIdempotenceSuite(): ConformanceTest[] {
  return [
    {
      id: "idempotence.conflict",
      title:
        "The same request_id with a different body fails ALREADY_EXISTS REQUEST_ID_CONFLICT while the first runs",
      tag: CORE,
      spec: ["PF-5", "PF-6", "PF-2"],
      needs: ["model"],
      run: runIdempotenceConflict,
    },
    {
      id: "idempotence.supersede-running",
      title:
        "A retry with the same request_id and body (another priority) while the first runs cancels the first (CANCELLED) and completes",
      tag: CORE,
      spec: ["PF-7"],
      needs: ["model"],
      run: runIdempotenceSupersedeRunning,
    },
    {
      id: "idempotence.replay-recompute",
      title:
        "Replaying a finished, unretained request_id gives the same descriptor and first token",
      tag: CORE,
      spec: ["PF-7", "PF-34"],
      needs: ["model"],
      run: runIdempotenceReplayRecompute,
    },
    {
      id: "idempotence.replay-retained",
      title:
        "Replaying a retained request_id answers from the cache: same handle, lease, digest and first token",
      tag: optional("retention"),
      spec: ["PF-7", "RT-4"],
      needs: ["model"],
      run: runIdempotenceReplayRetained,
    },
  ];
}

/**
 * `idempotence.conflict`: The same request_id with a different body fails ALREADY_EXISTS
 * REQUEST_ID_CONFLICT while the first runs.
 */
async function runIdempotenceConflict(ctx: ConformanceContext): Promise<void> {
  const held = startHeldPrefill(ctx, connectSlowReader(ctx));
  try {
    await assertHeldAccepted(held, "the first prefill");
    await expectFailure(
      () =>
        drain(
          ctx.a.stream(
            "prefill",
            { ...held.request, promptTokenIds: ctx.prompt(9, 1) },
            { timeoutMs: ctx.prefillTimeoutMs },
          ),
        ),
      { code: Code.ALREADY_EXISTS, reasons: ["REQUEST_ID_CONFLICT"], spec: "PF-6" },
      "the same request_id with another prompt",
    );
  } finally {
    held.cancel();
  }
}

/**
 * `idempotence.supersede-running`: A retry with the same request_id and body (another priority)
 * while the first runs cancels the first (CANCELLED) and completes. The retry raises its priority,
 * as a router would: priority is not part of the body (§3).
 */
async function runIdempotenceSupersedeRunning(ctx: ConformanceContext): Promise<void> {
  const held = startHeldPrefill(ctx, connectSlowReader(ctx));
  try {
    await assertHeldAccepted(held, "the first prefill");
    const retry = await ctx.prefill({
      ...held.request,
      priority: (held.request.priority ?? 0) - 1,
    });
    assertCompleted(retry, "the retry");
    const first = await held.finish();
    assertConformance(
      first.status?.code === Code.CANCELLED &&
        first.status.details?.errorInfos[0]?.reason === "CANCELLED",
      `PF-7: the superseded call ended ${first.status ? describeWireStatus(first.status) : first.completed ? "with a complete stream" : "OK"}, expected CANCELLED CANCELLED`,
    );
  } finally {
    held.cancel();
  }
}

/**
 * `idempotence.replay-recompute`: Replaying a finished, unretained request_id gives the same
 * descriptor and first token.
 */
async function runIdempotenceReplayRecompute(ctx: ConformanceContext): Promise<void> {
  const request = ctx.prefillRequest({ promptTokenIds: ctx.prompt(28, 4) });
  const a = assertCompleted(await ctx.prefill(request), "the original");
  const b = assertCompleted(await ctx.prefill(request), "the replay");
  assertConformance(
    descriptorHex(a.accepted.descriptor) === descriptorHex(b.accepted.descriptor),
    "PF-7: the replay has another descriptor",
  );
  assertConformance(
    a.completed.firstTokenId === b.completed.firstTokenId,
    `PF-7: first token ${a.completed.firstTokenId} then ${b.completed.firstTokenId}`,
  );
  if (a.descriptor.numerics.bitExact) {
    assertConformance(
      a.digestHex === b.digestHex,
      "PF-34: a bit-exact device produced different bytes for the same request",
    );
  }
}

/**
 * `idempotence.replay-retained`: Replaying a retained request_id answers from the cache: same
 * handle, lease, digest and first token.
 */
async function runIdempotenceReplayRetained(ctx: ConformanceContext): Promise<void> {
  const { request, done: a } = await retainedPrefill(ctx);
  try {
    const b = assertCompleted(await ctx.prefill(request), "the replay");
    const problems: string[] = [];
    if (a.accepted.kvHandle !== b.accepted.kvHandle) problems.push("kv_handle differs");
    if (descriptorHex(a.accepted.descriptor) !== descriptorHex(b.accepted.descriptor))
      problems.push("descriptor differs");
    if (Number(a.accepted.leaseExpiryUnixMs) !== Number(b.accepted.leaseExpiryUnixMs))
      problems.push("lease_expiry_unix_ms differs");
    if (a.digestHex !== b.digestHex) problems.push("the bytes differ");
    if (
      toHex(a.completed.kvDigest ?? new Uint8Array()) !==
      toHex(b.completed.kvDigest ?? new Uint8Array())
    )
      problems.push("kv_digest differs");
    for (const k of [
      "firstTokenId",
      "firstTokenLogprob",
      "promptTokens",
      "prefixCacheHitTokens",
      "decoderPrefixTokens",
    ] as const) {
      if (a.completed[k] !== b.completed[k])
        problems.push(`${k} ${a.completed[k]} then ${b.completed[k]}`);
    }
    assertConformance(problems.length === 0, `PF-7: ${problems.join("; ")}`);
  } finally {
    await ctx.a.unary("releaseKv", { kvHandle: a.accepted.kvHandle ?? "" }).catch(() => {});
  }
}
