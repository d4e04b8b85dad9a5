import { opal } from "@opal/protocol";
import { assertConformance, type ConformanceContext } from "../conformance-test";
import type { WireCallOptions, WireClient, WireResponse } from "../wire-client";
import { describeWireStatus, toWireStatus, type WireStatus } from "../wire-status";

const v1 = opal.device.v1;

/** Chunk size a held prefill asks for, in bytes. */
const HELD_CHUNK_BYTES = 1024;
/** Cache size a held prefill aims at: far more than the transport can buffer for a reader that does not read. */
const HELD_CACHE_BYTES = 384 * 1024;

/** A prefill whose reader stopped reading after `accepted`, so that the device must hold it (`TR-3`). */
export interface HeldPrefill {
  readonly request: opal.device.v1.PrefillRequest.$Properties;
  /** The first message (normally `accepted`), once it arrived. */
  readonly first: Promise<WireResponse<"prefill"> | undefined>;
  /** Reads the rest of the stream: resolves with the messages read and how the call ended. */
  finish(): Promise<{ messages: number; completed: boolean; status?: WireStatus }>;
  cancel(): void;
}

/** A connection with a 4 KiB HTTP/2 window: a slow reader holds the device after a few chunks. */
export function connectSlowReader(ctx: ConformanceContext, token?: string): WireClient {
  return ctx.connect({ flowControlWindowBytes: 4096, ...(token ? { token } : {}) });
}

/** Prompt tokens for a cache of about 384 KiB in the request's format (capped by the limits). */
function heldPromptLength(ctx: ConformanceContext, dtype: number): number {
  const m = ctx.model?.info;
  const size =
    dtype === v1.KvDtype.KV_DTYPE_F32
      ? 4
      : dtype === v1.KvDtype.KV_DTYPE_F16 || dtype === v1.KvDtype.KV_DTYPE_BF16
        ? 2
        : 1;
  const perToken =
    (m?.numLayers ?? 1) *
    2 *
    (m?.mha?.numKvHeads ?? 1) *
    (m?.mha?.headDim ?? (m?.mla ? (m.mla.latentDim ?? 0) + (m.mla.ropeDim ?? 0) : 64)) *
    size;
  const limit = Math.min(
    ctx.capabilities.maxPromptTokens ?? 1,
    m?.maxPositionEmbeddings || Number.POSITIVE_INFINITY,
  );
  return Math.max(1, Math.min(limit, Math.ceil(HELD_CACHE_BYTES / perToken)));
}

/**
 * Starts a prefill on `client` (a slow reader) and reads only its first message. The request asks
 * for 1 KiB chunks of a ~384 KiB cache, so a device honouring back-pressure cannot finish.
 */
export function startHeldPrefill(
  ctx: ConformanceContext,
  client: WireClient,
  overrides: Partial<opal.device.v1.PrefillRequest.$Properties> = {},
  call: WireCallOptions = {},
): HeldPrefill {
  const base = ctx.prefillRequest();
  const request = ctx.prefillRequest({
    promptTokenIds: ctx.prompt(heldPromptLength(ctx, base.kvFormat?.dtype ?? 0), 17),
    maxChunkBytes: Math.min(HELD_CHUNK_BYTES, ctx.capabilities.maxChunkBytes ?? HELD_CHUNK_BYTES),
    ...overrides,
  });
  const stream = client.stream("prefill", request, { signal: ctx.signal, ...call });
  const iterator = stream[Symbol.asyncIterator]();
  let count = 0;
  let failure: WireStatus | undefined;
  let ended = false;
  const first = iterator.next().then(
    (r) => {
      if (r.done) ended = true;
      else count++;
      return r.done ? undefined : r.value;
    },
    (error) => {
      failure = toWireStatus(error) ?? { code: 2, message: String(error), messagesBefore: 0 };
      ended = true;
      return undefined;
    },
  );
  return {
    request,
    first,
    async finish() {
      await first;
      let completed = false;
      if (!ended) {
        try {
          for (;;) {
            const r = await iterator.next();
            if (r.done) break;
            count++;
            if (r.value.completed) completed = true;
          }
        } catch (error) {
          failure = toWireStatus(error) ?? {
            code: 2,
            message: String(error),
            messagesBefore: count,
          };
        }
      }
      return { messages: count, completed, ...(failure ? { status: failure } : {}) };
    },
    cancel: () => stream.cancel(),
  };
}

/** Waits for a held prefill's `accepted`, failing the test when it does not come. */
export async function assertHeldAccepted(held: HeldPrefill, what: string): Promise<void> {
  const first = await held.first;
  if (!first) {
    const { status } = await held.finish();
    assertConformance(
      false,
      `${what} was not accepted: ${status ? describeWireStatus(status) : "the stream ended"}`,
    );
  }
  assertConformance(first?.accepted, `PF-10: ${what}: the first message is not \`accepted\``);
}

/** Resolves with true when `promise` settles within `ms`. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
