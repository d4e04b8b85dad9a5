import type { PrefillStats } from "@opal/driver";
import type { KvDescriptor, KvLayerParts } from "@opal/kv";

/**
 * Where a prefill's KV cache goes on the decode side, fed layer by layer. The SDK calls `open`
 * once, `writeLayer` for each verified layer in order (0, 1, …), then exactly one of `commit`
 * (after the whole-cache digest matched) or `abort`. A sink makes the cache visible only in
 * `commit`: files are written under a temporary name and renamed, buffers the caller owns must not
 * be read before `commit` resolves, and `abort` removes or invalidates whatever was written.
 * A layer's views are only valid during `writeLayer` unless it is marked `stable`: copy what must
 * outlive it.
 */
export interface KvSink<Receipt> {
  /**
   * A hint that the sink keeps the layers it is given (the memory sink): the SDK then assembles
   * each layer into buffers of its own, which the sink adopts without copying. Without it the SDK
   * may reuse one layer's buffers for the next (those layers are not `stable`). Default false.
   */
  readonly keepsLayerViews?: boolean;
  /** Called once with the cache's descriptor before any layer; may reject a descriptor it cannot take. */
  open(descriptor: KvDescriptor): void | Promise<void>;
  /** Stores one verified layer. Back-pressure: the stream waits for the returned promise. */
  writeLayer(layer: KvLayerParts): void | Promise<void>;
  /** Makes the complete cache visible and returns the sink's receipt. */
  commit(stats: PrefillStats): Receipt | Promise<Receipt>;
  /** Discards everything written; idempotent; never throws. */
  abort(reason: unknown): void | Promise<void>;
}
