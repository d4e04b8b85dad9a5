import { randomBytes } from "node:crypto";
import { toHex } from "@opal/kv";
import { opal } from "@opal/protocol";
import {
  assertConformance,
  assertNoViolations,
  CORE,
  type ConformanceContext,
  type ConformanceTest,
  optional,
} from "../conformance-test";
import { createKvReceiverHost } from "../kv-receiver-host";
import { assertCompleted } from "./prefill-checks";

const v1 = opal.device.v1;

async function readSnapshots(
  stream: AsyncIterable<opal.device.v1.WatchTelemetryResponse>,
  count: number,
) {
  const out: { at: number; snapshot: opal.device.v1.ITelemetrySnapshot }[] = [];
  for await (const message of stream) {
    out.push({ at: performance.now(), snapshot: message.snapshot ?? {} });
    if (out.length >= count) break;
  }
  return out;
}

/** Snapshot interval the pacing checks ask for, in ms. */
const INTERVAL_MS = 100;
/** Largest mean gap accepted between snapshots at {@link INTERVAL_MS}, in ms (generous for loaded CI hosts). */
const MAX_MEAN_GAP_MS = 4 * INTERVAL_MS + 200;

/**
 * Ms from opening a watch with `intervalMs` to its first snapshot; Infinity when none came within
 * 2 s (the call is then cancelled).
 */
async function firstSnapshotMs(ctx: ConformanceContext, intervalMs: number): Promise<number> {
  const started = performance.now();
  const stream = ctx.a.stream(
    "watchTelemetry",
    { intervalMs },
    { timeoutMs: 2_000, signal: ctx.signal },
  );
  try {
    const [first] = await readSnapshots(stream, 1);
    return first ? first.at - started : Number.POSITIVE_INFINITY;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/** Telemetry snapshots (`TM-`) and push handoff (`PS-`). */
export function toTelemetryAndPushSuite(): ConformanceTest[] {
  return [
    {
      id: "telemetry.snapshots",
      title:
        "WatchTelemetry sends complete snapshots at once and then per interval, with sane values",
      tag: CORE,
      spec: ["TM-1", "TM-2", "TM-6", "GEN-5"],
      run: runTelemetrySnapshots,
    },
    {
      id: "telemetry.interval-clamp",
      title: "An interval below 50 ms is clamped to 50 ms",
      tag: CORE,
      spec: ["TM-1", "TM-3"],
      run: runTelemetryIntervalClamp,
    },
    {
      id: "push.handoff",
      title:
        "A prefill with push_target pushes the cache to a receiver the suite hosts and completes with its receipt",
      tag: optional("push"),
      spec: ["PS-2", "PS-3", "PS-6", "PS-8", "PS-12", "PS-14", "PF-10"],
      needs: ["model"],
      run: runPushHandoff,
    },
  ];
}

/**
 * `telemetry.snapshots`: WatchTelemetry sends complete snapshots at once and then per interval,
 * with sane values.
 */
async function runTelemetrySnapshots(ctx: ConformanceContext): Promise<void> {
  const started = performance.now();
  const stream = ctx.a.stream(
    "watchTelemetry",
    { intervalMs: INTERVAL_MS },
    { timeoutMs: 10_000, signal: ctx.signal },
  );
  const snaps = await readSnapshots(stream, 3);
  assertConformance(
    snaps.length === 3,
    `TM-4: the telemetry stream ended after ${snaps.length} snapshots`,
  );
  const firstMs = snaps[0]!.at - started;
  assertConformance(
    firstMs <= 1_000,
    `TM-1: the first snapshot came after ${firstMs.toFixed(0)} ms (limit 1,000 ms)`,
  );
  const meanGapMs = (snaps[2]!.at - snaps[0]!.at) / 2;
  assertConformance(
    meanGapMs <= MAX_MEAN_GAP_MS,
    `TM-1: interval_ms ${INTERVAL_MS} gave a snapshot every ${meanGapMs.toFixed(0)} ms (limit ${MAX_MEAN_GAP_MS} ms)`,
  );
  // A device that waits one interval before the first snapshot (a bare timer) fails here.
  const longFirstMs = await firstSnapshotMs(ctx, 5_000);
  assertConformance(
    longFirstMs <= 1_000,
    `TM-1: with interval_ms 5000 the first snapshot came after ${Number.isFinite(longFirstMs) ? `${longFirstMs.toFixed(0)} ms` : "more than 2,000 ms"} (limit 1,000 ms: immediately)`,
  );
  const c = ctx.capabilities;
  const problems: string[] = [];
  let energy = 0;
  let time = 0;
  for (const { snapshot: s } of snaps) {
    const u = s.utilization ?? 0;
    if (!(u >= 0 && u <= 1)) problems.push(`utilization ${u} outside 0..1`);
    if ((s.activePrefills ?? 0) > (c.maxConcurrentPrefills ?? 0))
      problems.push(`active_prefills ${s.activePrefills} > max_concurrent_prefills`);
    if (
      (c.retention?.maxRetainedBytes ?? 0) > 0 &&
      Number(s.retainedKvBytes ?? 0) > Number(c.retention?.maxRetainedBytes)
    )
      problems.push("retained_kv_bytes > max_retained_bytes");
    if ((s.energyJoulesTotal ?? 0) < energy) problems.push("TM-6: energy_joules_total decreased");
    energy = s.energyJoulesTotal ?? 0;
    if (Number(s.timestampUnixMs ?? 0) < time) problems.push("timestamp_unix_ms went backwards");
    time = Number(s.timestampUnixMs ?? 0);
    if (!(Number(s.timestampUnixMs ?? 0) > 1.5e12))
      problems.push(`GEN-5: timestamp_unix_ms ${s.timestampUnixMs} is not milliseconds since 1970`);
    for (const cond of s.conditions ?? []) {
      if (!/^[A-Z][A-Z0-9_]*$/.test(cond.name ?? ""))
        problems.push(`condition name ${JSON.stringify(cond.name)} is not UPPER_SNAKE_CASE`);
      if (!cond.severity) problems.push(`GEN-3: condition ${cond.name} has severity UNSPECIFIED`);
    }
  }
  assertConformance(problems.length === 0, `TM-2: ${problems.join("; ")}`);
}

/** `telemetry.interval-clamp`: An interval below 50 ms is clamped to 50 ms. */
async function runTelemetryIntervalClamp(ctx: ConformanceContext): Promise<void> {
  const snaps = await readSnapshots(
    ctx.a.stream("watchTelemetry", { intervalMs: 1 }, { timeoutMs: 10_000, signal: ctx.signal }),
    5,
  );
  const gaps = snaps.slice(1).map((s, i) => s.at - snaps[i]!.at);
  const mean = gaps.reduce((a, b) => a + b, 0) / Math.max(1, gaps.length);
  assertConformance(
    mean >= 40,
    `TM-1: interval_ms 1 gave snapshots every ${mean.toFixed(1)} ms (clamped to 50 ms expected)`,
  );
  ctx.note(`mean gap ${mean.toFixed(1)} ms`);
}

/**
 * `push.handoff`: A prefill with push_target pushes the cache to a receiver the suite hosts and
 * completes with its receipt.
 */
async function runPushHandoff(ctx: ConformanceContext): Promise<void> {
  const pushToken = randomBytes(12).toString("hex");
  const host = await createKvReceiverHost({ token: pushToken, host: ctx.receiverHost });
  try {
    const transferId = ctx.requestId("transfer");
    host.expect(transferId);
    const request = ctx.prefillRequest({
      pushTarget: { address: host.address, transferId, authorizationToken: pushToken },
    });
    const done = assertCompleted(await ctx.prefill(request), "the push prefill");
    assertConformance(
      done.chunkCount === 0,
      `PS-12: the prefill stream carried ${done.chunkCount} chunks`,
    );
    const progress = done.pushProgress.map((p) => Number(p.bytesPushed ?? 0));
    assertConformance(
      progress.every((b, i) => i === 0 || b >= progress[i - 1]!),
      "PS-12: push_progress.bytes_pushed decreased",
    );
    const receipt = done.completed.pushReceipt;
    const push = host.pushes.find((p) => p.transferId === transferId);
    assertConformance(push, "PS-3: the receiver got no push with the transfer id");
    assertConformance(!push.rejection, `PS-6: the receiver rejected the push: ${push.rejection}`);
    assertNoViolations(push.collected.violations, "PS-6");
    assertConformance(
      push.token === pushToken,
      "PS-2: the device did not present the push target's authorization_token",
    );
    assertConformance(
      push.header?.requestId === request.requestId,
      "PS-3: header.request_id differs from the prefill's",
    );
    assertConformance(
      Buffer.from(v1.KvDescriptor.encode(push.header?.descriptor ?? {}).finish()).equals(
        Buffer.from(v1.KvDescriptor.encode(done.accepted.descriptor ?? {}).finish()),
      ),
      "PS-3: the pushed descriptor differs from the prefill's accepted descriptor",
    );
    assertConformance(
      receipt?.committed && receipt.cacheId === push.cacheId,
      `PS-14: completed.push_receipt ${JSON.stringify(receipt)} does not name the receiver's cache ${push.cacheId}`,
    );
    assertConformance(
      toHex(done.completed.kvDigest ?? new Uint8Array()) === push.collected.digestHex,
      "PS-14: completed.kv_digest differs from the pushed bytes' digest",
    );
    assertConformance(
      push.commit?.firstTokenId === done.completed.firstTokenId,
      "PS-3: the commit's first_token_id differs from completed.first_token_id",
    );
  } finally {
    await host.close();
  }
}
