// Prefix-affinity routing against round-robin and least-loaded: three mock devices served over gRPC
// behind a device pool, a workload of shared system prompts (16 prefixes of 256 tokens, each used
// by 8 requests with their own 32-token tails, in a shuffled order). Reports each policy's
// prefix-cache hit rate (tokens the devices reused / prompt tokens) and the affinity gain.
// Prints one JSON line per figure (see tools/bench.mjs).
import type { PrefillRequest } from "@opal/driver";
import { type MockServer, serveMockDevice } from "@opal/mock";
import { createDevicePool, type RoutingPolicy, startPrefill } from "../src/index";
import { reportFigure } from "../test/reliability/bench-report";

const PREFIXES = 16;
const REQUESTS_PER_PREFIX = 8;
const PREFIX_TOKENS = 256;
const TAIL_TOKENS = 32;

/** The workload: every (prefix, repeat) pair once, in an order fixed by a seeded shuffle. */
function workload(): Array<{ prefix: number; repeat: number }> {
  const items = Array.from({ length: PREFIXES * REQUESTS_PER_PREFIX }, (_, i) => ({
    prefix: i % PREFIXES,
    repeat: Math.floor(i / PREFIXES),
  }));
  let seed = 12345;
  for (let i = items.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const j = seed % (i + 1);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

function request(policy: string, prefix: number, repeat: number): PrefillRequest {
  const tokens = new Uint32Array(PREFIX_TOKENS + TAIL_TOKENS);
  for (let i = 0; i < PREFIX_TOKENS; i++) tokens[i] = (prefix * 7919 + i * 31) % 250;
  for (let i = 0; i < TAIL_TOKENS; i++) tokens[PREFIX_TOKENS + i] = (repeat * 104_729 + i) % 250;
  return {
    requestId: `${policy}-${prefix}-${repeat}`,
    modelId: "opal-tiny",
    promptTokenIds: tokens,
    kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  };
}

/** Runs the workload through a pool of fresh devices; returns the prefix-cache hit rate. */
async function hitRate(policy: RoutingPolicy): Promise<number> {
  const servers: MockServer[] = [];
  for (let i = 0; i < 3; i++) {
    servers.push(await serveMockDevice({ models: ["opal-tiny"], profile: "instant" }, { port: 0 }));
  }
  const pool = await createDevicePool(
    servers.map((s) => s.address),
    { routing: policy },
  );
  let hit = 0;
  let prompt = 0;
  try {
    for (const { prefix, repeat } of workload()) {
      const outcome = await startPrefill(pool, request(policy, prefix, repeat)).result;
      hit += outcome.stats.prefixCacheHitTokens;
      prompt += outcome.stats.promptTokens;
    }
  } finally {
    await pool.close();
    for (const server of servers) await server.close();
  }
  return hit / prompt;
}

const roundRobin = await hitRate("round-robin");
const leastLoaded = await hitRate("least-loaded");
const affinity = await hitRate("prefix-affinity");
reportFigure("client/prefix-hit-rate-round-robin", "%", 100 * roundRobin);
reportFigure("client/prefix-hit-rate-least-loaded", "%", 100 * leastLoaded);
reportFigure("client/prefix-hit-rate-prefix-affinity", "%", 100 * affinity);
// The issue asks for a measurable raise; 1.2x is far above run-to-run noise (the workload is fixed).
reportFigure("client/prefix-affinity-gain-over-round-robin", "x", affinity / roundRobin, {
  target: 1.2,
});
