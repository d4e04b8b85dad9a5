import { Code, sleep } from "@opal/core";
import {
  assertConformance,
  CORE,
  type ConformanceContext,
  type ConformanceTest,
} from "../conformance-test";
import { assertWireStatus } from "../expect-status";
import { describeWireStatus } from "../wire-status";
import {
  assertHeldAccepted,
  connectSlowReader,
  type HeldPrefill,
  settlesWithin,
  startHeldPrefill,
} from "./held-prefill";
import { assertCompleted } from "./prefill-checks";

/** Most streams the suite opens at once to saturate a device. */
const MAX_STREAMS = 64;

async function holdAllSlots(ctx: ConformanceContext, timeoutMs?: number): Promise<HeldPrefill[]> {
  const slots = ctx.capabilities.maxConcurrentPrefills ?? 1;
  if (slots > MAX_STREAMS)
    ctx.skip(
      `max_concurrent_prefills ${slots} is above the ${MAX_STREAMS} streams the suite opens`,
    );
  const client = connectSlowReader(ctx);
  const held = Array.from({ length: slots }, () =>
    startHeldPrefill(ctx, client, {}, timeoutMs ? { timeoutMs } : {}),
  );
  for (const [i, h] of held.entries())
    await assertHeldAccepted(h, `held prefill ${i + 1} of ${slots}`);
  return held;
}

/** A prefill that must wait for a slot while every slot is held; checks it is not admitted early (`TR-3`). */
async function assertSaturated(waiting: HeldPrefill): Promise<void> {
  const early = await settlesWithin(waiting.first, 300);
  if (early) {
    const first = await waiting.first;
    if (first?.accepted) {
      assertConformance(
        false,
        "TR-3: with every slot held by a reader that stopped reading, another prefill was accepted at once: the device does not hold streams on back-pressure (or declares fewer slots than it has)",
      );
    }
  }
}

/**
 * After `release` frees every slot, a new prefill must be admitted and complete. With a queue the
 * waiting prefill (started before) is admitted; without one (max_queued_prefills 0) new prefills
 * are retried on DEVICE_BUSY. Resolves with the ms from release to admission.
 */
async function admittedAfter(
  ctx: ConformanceContext,
  waiting: HeldPrefill | undefined,
  release: () => Promise<void>,
  how: { readonly rule: string; readonly ended: string },
): Promise<number> {
  await release();
  const released = performance.now();
  if (waiting) {
    const admitted = await settlesWithin(waiting.first, 5_000);
    assertConformance(
      admitted,
      `${how.rule}: the slots were not freed: no queued prefill was admitted within 5 s after every running prefill ${how.ended}`,
    );
    const ms = performance.now() - released;
    const { completed, status } = await waiting.finish();
    assertConformance(
      completed && !status,
      `PF-31: the prefill admitted after the others ended failed: ${status ? describeWireStatus(status) : "incomplete"}`,
    );
    return ms;
  }
  for (;;) {
    const run = await ctx.prefill(ctx.prefillRequest());
    const busy = run.status?.details?.errorInfos[0]?.reason === "DEVICE_BUSY";
    if (!busy) {
      assertCompleted(run, "the prefill started after the others ended");
      return performance.now() - released;
    }
    assertConformance(
      performance.now() - released < 5_000,
      `${how.rule}: the slots were not freed: still DEVICE_BUSY 5 s after every running prefill ${how.ended}`,
    );
    await sleep(50, ctx.signal);
  }
}

/** Deadlines, cancellation and concurrency (`PF-29`…`PF-31`, `ID-7`). */
export function toLoadSuite(): ConformanceTest[] {
  return [
    {
      id: "deadlines.cancel-frees-slots",
      title:
        "Cancelling prefills frees their slots: a queued prefill is admitted within 1 s and completes",
      tag: CORE,
      spec: ["PF-30", "PF-31", "TR-3"],
      needs: ["model"],
      timeoutMs: 60_000,
      run: runDeadlinesCancelFreesSlots,
    },
    {
      id: "deadlines.deadline-frees-slots",
      title: "Prefills whose deadline passes end DEADLINE_EXCEEDED and free their slots",
      tag: CORE,
      spec: ["PF-29", "PF-30", "PF-31"],
      needs: ["model"],
      timeoutMs: 60_000,
      run: runDeadlinesDeadlineFreesSlots,
    },
    {
      id: "concurrency.max-concurrent",
      title: "max_concurrent_prefills prefills at once all complete with valid streams",
      tag: CORE,
      spec: ["ID-7", "PF-10", "PF-26"],
      needs: ["model"],
      timeoutMs: 120_000,
      run: runConcurrencyMaxConcurrent,
    },
    {
      id: "concurrency.device-busy",
      title:
        "Beyond max_concurrent_prefills + max_queued_prefills a prefill fails RESOURCE_EXHAUSTED DEVICE_BUSY with RetryInfo",
      tag: CORE,
      spec: ["PF-1", "PF-2", "ERR-4", "ID-7"],
      needs: ["model"],
      timeoutMs: 60_000,
      run: runConcurrencyDeviceBusy,
    },
  ];
}

/**
 * `deadlines.cancel-frees-slots`: Cancelling prefills frees their slots: a queued prefill is
 * admitted within 1 s and completes.
 */
async function runDeadlinesCancelFreesSlots(ctx: ConformanceContext): Promise<void> {
  const held = await holdAllSlots(ctx);
  const queued = (ctx.capabilities.maxQueuedPrefills ?? 0) > 0;
  const waiting = queued ? startHeldPrefill(ctx, ctx.connect()) : undefined;
  try {
    if (waiting) await assertSaturated(waiting);
    const ms = await admittedAfter(
      ctx,
      waiting,
      async () => {
        for (const h of held) h.cancel();
      },
      { rule: "PF-30", ended: "was cancelled by its caller" },
    );
    assertConformance(
      ms <= 1_500,
      `PF-30: the freed slot was reused only after ${ms.toFixed(0)} ms (SHOULD within 1 s)`,
    );
    ctx.note(`slot reused ${ms.toFixed(0)} ms after cancellation`);
  } finally {
    for (const h of held) h.cancel();
    waiting?.cancel();
  }
}

/**
 * `deadlines.deadline-frees-slots`: Prefills whose deadline passes end DEADLINE_EXCEEDED and free
 * their slots.
 */
async function runDeadlinesDeadlineFreesSlots(ctx: ConformanceContext): Promise<void> {
  const deadlineMs = 3_000;
  const started = performance.now();
  const held = await holdAllSlots(ctx, deadlineMs);
  const queued = (ctx.capabilities.maxQueuedPrefills ?? 0) > 0;
  const waiting = queued ? startHeldPrefill(ctx, ctx.connect()) : undefined;
  try {
    if (waiting) await assertSaturated(waiting);
    // Read nothing until the deadline has passed: the device must end the calls by itself.
    await sleep(Math.max(0, deadlineMs + 300 - (performance.now() - started)), ctx.signal);
    let endedMs = 0;
    await admittedAfter(
      ctx,
      waiting,
      async () => {
        for (const [i, h] of held.entries()) {
          const { status, completed } = await h.finish();
          assertConformance(
            !completed,
            `PF-29: held prefill ${i + 1} completed although its reader never read before the deadline`,
          );
          assertConformance(
            status?.code === Code.DEADLINE_EXCEEDED,
            `PF-29: held prefill ${i + 1} ended ${status ? describeWireStatus(status) : "OK"}, expected DEADLINE_EXCEEDED`,
          );
        }
        endedMs = performance.now() - started;
      },
      { rule: "PF-29", ended: "passed its deadline" },
    );
    ctx.note(`deadline ${deadlineMs} ms; streams ended after ${endedMs.toFixed(0)} ms`);
  } finally {
    for (const h of held) h.cancel();
    waiting?.cancel();
  }
}

/**
 * `concurrency.max-concurrent`: max_concurrent_prefills prefills at once all complete with valid
 * streams.
 */
async function runConcurrencyMaxConcurrent(ctx: ConformanceContext): Promise<void> {
  const n = Math.min(ctx.capabilities.maxConcurrentPrefills ?? 1, 16);
  const runs = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      ctx.prefill(ctx.prefillRequest({ promptTokenIds: ctx.prompt(32 + i, i) })),
    ),
  );
  for (const [i, run] of runs.entries())
    assertCompleted(run, `concurrent prefill ${i + 1} of ${n}`);
  ctx.note(`${n} concurrent prefills`);
}

/**
 * `concurrency.device-busy`: Beyond max_concurrent_prefills + max_queued_prefills a prefill fails
 * RESOURCE_EXHAUSTED DEVICE_BUSY with RetryInfo.
 */
async function runConcurrencyDeviceBusy(ctx: ConformanceContext): Promise<void> {
  const slots = ctx.capabilities.maxConcurrentPrefills ?? 1;
  const queue = ctx.capabilities.maxQueuedPrefills ?? 0;
  if (slots + queue > MAX_STREAMS)
    ctx.skip(`slots + queue (${slots + queue}) exceed the ${MAX_STREAMS} streams the suite opens`);
  const held = await holdAllSlots(ctx);
  const queued: HeldPrefill[] = [];
  try {
    const client = ctx.connect();
    for (let i = 0; i < queue; i++) queued.push(startHeldPrefill(ctx, client));
    // Let the queued requests reach the device's queue.
    await sleep(500, ctx.signal);
    for (const [i, q] of queued.entries()) {
      if (await settlesWithin(q.first, 0)) {
        const { status } = await q.finish();
        assertConformance(
          false,
          `ID-7: queued prefill ${i + 1} of ${queue} (within max_queued_prefills) ended early: ${status ? describeWireStatus(status) : "admitted"}`,
        );
      }
    }
    const extra = startHeldPrefill(ctx, ctx.connect());
    const { status } = await extra.finish();
    assertWireStatus(
      status,
      {
        code: Code.RESOURCE_EXHAUSTED,
        reasons: ["DEVICE_BUSY", "TENANT_QUOTA_EXCEEDED"],
        spec: "PF-1",
      },
      "a prefill beyond slots and queue",
    );
  } finally {
    for (const h of [...held, ...queued]) h.cancel();
  }
}
