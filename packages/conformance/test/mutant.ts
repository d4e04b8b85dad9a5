import { OpalError, type OpalErrorOptions } from "@opal/core";
import type {
  DriverCallOptions,
  PrefillDriver,
  PrefillEvent,
  ReceivedPrefillRequest,
} from "@opal/driver";
import type { KvChunk } from "@opal/kv";
import type { MockDevice } from "@opal/mock";
import { type Mutation, overrideDriver } from "./mutant-device";
import type { WireProxyHooks } from "./wire-proxy";

/**
 * A device that breaks one normative rule the way a vendor might, and the conformance tests that
 * must fail against it. Either `mutation` builds the driver served by `@opal/server`, or `proxy`
 * rewrites the wire between the suite and a clean mock (for what the server host does itself).
 */
export interface Mutant {
  /** What the device gets wrong, in a few words. */
  readonly name: string;
  readonly mutation?: Mutation;
  /** Builds the hooks of one run's proxy. */
  readonly proxy?: () => WireProxyHooks;
  /** Ids of the tests that must fail; only these run. */
  readonly fails: readonly string[];
  /** Every failure message must match (the requirement id the failure cites). */
  readonly cites: RegExp;
}

/** Rewrites the event stream of every prefill. */
export function mapPrefill(
  mock: MockDevice,
  rewrite: (
    events: AsyncIterable<PrefillEvent>,
    request: ReceivedPrefillRequest,
    options: DriverCallOptions | undefined,
  ) => AsyncIterable<PrefillEvent>,
  request: (r: ReceivedPrefillRequest) => ReceivedPrefillRequest = (r) => r,
): PrefillDriver {
  return overrideDriver(mock, {
    prefill: (r, options) => rewrite(mock.prefill(request(r), options), r, options),
  });
}

/** Changes every event of a stream with `map` (return undefined to drop it). */
export async function* mapEvents<E>(
  events: AsyncIterable<E>,
  map: (event: E) => E | undefined,
): AsyncIterable<E> {
  for await (const event of events) {
    const mapped = map(event);
    if (mapped !== undefined) yield mapped;
  }
}

/** A chunk whose bytes outlive the next event (driver views do not). */
export function keepChunk(chunk: KvChunk): KvChunk {
  return { ...chunk, data: chunk.data.slice() };
}

/** A copy of `error` with `options` changed; other errors pass unchanged. */
export function withErrorOptions(
  error: unknown,
  change: (e: OpalError) => OpalErrorOptions & { code?: number },
): unknown {
  if (!(error instanceof OpalError)) return error;
  const { code, ...options } = change(error);
  return new OpalError((code ?? error.code) as OpalError["code"], error.rawMessage, options);
}

/** The options of `error`, to change some of them. */
export function optionsOf(error: OpalError): OpalErrorOptions {
  return {
    reason: error.reason,
    fieldViolations: error.fieldViolations,
    metadata: error.metadata,
    ...(error.retryDelayMs !== undefined ? { retryDelayMs: error.retryDelayMs } : {}),
    ...(error.resource ? { resource: error.resource } : {}),
  };
}

/** A driver whose prefill errors are rewritten by `change`. */
export function mapPrefillErrors(
  mock: MockDevice,
  change: (e: OpalError) => (OpalErrorOptions & { code?: number }) | undefined,
): PrefillDriver {
  return mapPrefill(mock, async function* (events) {
    try {
      yield* events;
    } catch (error) {
      throw withErrorOptions(error, (e) => change(e) ?? optionsOf(e));
    }
  });
}
