import type { PrefillDriver, PrefillRequest } from "@opal/driver";
import type { Span } from "@opentelemetry/api";
import type { KvSink } from "../sinks/kv-sink";
import type { LayerDelivery } from "./layer-delivery";
import type { RetainedCaches } from "./retained-caches";
import type { RetryPolicy } from "./retry-policy";

/** Everything one `startPrefill` run knows, shared by its attempts: plain state. */
export interface PrefillRunState<Receipt> {
  readonly device: PrefillDriver;
  readonly request: PrefillRequest;
  /** Creates each attempt's sink. */
  readonly newSink: () => KvSink<Receipt>;
  readonly retry: RetryPolicy;
  /** Attempts at most, and resumes at most over the run (`retry.maxAttempts`, default 4). */
  readonly maxAttempts: number;
  /** Whether a broken stream may be resumed with FetchKv (`PrefillOptions.resume`). */
  readonly resume: boolean;
  /** Ends the run: the caller's signal and deadline. */
  readonly signal: AbortSignal;
  readonly span: Span;
  /** When the run started (`performance.now()`). */
  readonly startedAt: number;
  readonly layers: LayerDelivery;
  readonly retained: RetainedCaches;
  /** Streams resumed so far, over every attempt. */
  resumes: number;
  /** When the first layer of any attempt arrived (`performance.now()`); undefined: none yet. */
  firstLayerAt: number | undefined;
}
