import { Code } from "@opal/core";
import { opal } from "@opal/protocol";
import type { ConformanceContext } from "../conformance-test";
import type { WireClient } from "../wire-client";
import { assertCompleted } from "./prefill-checks";

const v1 = opal.device.v1;
/** The descriptor's wire bytes as hex, to compare descriptors exactly. */
export const descriptorHex = (d: opal.device.v1.IKvDescriptor | null | undefined) =>
  Buffer.from(v1.KvDescriptor.encode(d ?? {}).finish()).toString("hex");

/** A FetchKv stream of `kvHandle` (tenant A unless `client` says otherwise). */
export function fetch(
  ctx: ConformanceContext,
  kvHandle: string,
  extra: Partial<opal.device.v1.FetchKvRequest.$Properties> = {},
  client: WireClient = ctx.a,
) {
  return client.stream(
    "fetchKv",
    { kvHandle, ...extra },
    { timeoutMs: ctx.prefillTimeoutMs, signal: ctx.signal },
  );
}

/** A completed prefill retained for `seconds` (capped at the device's limit). */
export async function retainedPrefill(ctx: ConformanceContext, seconds = 60, client?: WireClient) {
  const max = ctx.capabilities.retention?.maxRetentionSeconds ?? 0;
  const request = ctx.prefillRequest({
    retentionSeconds: Math.min(seconds, max),
    promptTokenIds: ctx.prompt(30, 21),
  });
  return {
    request,
    done: assertCompleted(
      await ctx.prefill(request, client ? { client } : {}),
      "a retained prefill",
    ),
  };
}

/** The failure a handle unknown to the caller must give: NOT_FOUND KV_HANDLE_NOT_FOUND. */
export const notFound = (spec: string) => ({
  code: Code.NOT_FOUND,
  reasons: ["KV_HANDLE_NOT_FOUND"],
  spec,
});
