import type { KvReceiverOptions, ReceivedKv } from "./kv-receiver-options";
import { createReceiverAdmission } from "./receiver-admission";
import { DEFAULT_IDLE_TIMEOUT_MS } from "./with-idle-timeout";

/** 2 GiB: the default of `KvReceiverOptions.maxBufferedBytes`. */
const DEFAULT_MAX_BUFFERED_BYTES = 2 ** 31;

/** A `received()` call waiting for its transfer. */
export interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

/** Everything a KvReceiver holds: its settings, transfers in progress and committed transfers. */
export interface ReceiverState<Receipt> {
  readonly options: KvReceiverOptions<Receipt>;
  /** No KV bytes for this long fails a push (PS-9), in ms. */
  readonly idleTimeoutMs: number;
  /** Accepted bearer tokens; none: every sender is accepted. */
  readonly tokens: readonly Buffer[];
  readonly admission: ReturnType<typeof createReceiverAdmission>;
  /** Committed transfers by id, oldest first, at most `maxRememberedTransfers`. */
  readonly committed: Map<string, ReceivedKv<Receipt>>;
  /** The whole-cache digest (hex) of each remembered committed transfer. */
  readonly digests: Map<string, string>;
  /** Transfer ids being received now: a second push under one of them is refused (PS-13). */
  readonly receiving: Set<string>;
  /** `received()` calls waiting, by transfer id; each removes itself when it settles. */
  readonly waiters: Map<string, Set<Waiter<ReceivedKv<Receipt>>>>;
  /** The number of the next committed cache (`cache-<n>`). */
  nextCacheId: number;
  /** Set by `close()`: `received()` of a transfer not committed yet rejects. */
  closed: boolean;
}

/** The state of a receiver with checked `options` that has received nothing. */
export function createReceiverState<Receipt>(
  options: KvReceiverOptions<Receipt>,
): ReceiverState<Receipt> {
  const maxConcurrentTransfers = options.maxConcurrentTransfers ?? 16;
  const maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
  return {
    options,
    idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    tokens: (options.tokens ?? []).map((t) => Buffer.from(t)),
    admission: createReceiverAdmission({
      maxConcurrentTransfers,
      maxTransfersPerSender: options.maxTransfersPerSender ?? Math.ceil(maxConcurrentTransfers / 2),
      maxBufferedBytes,
      maxBufferedBytesPerSender:
        options.maxBufferedBytesPerSender ?? Math.ceil(maxBufferedBytes / 2),
    }),
    committed: new Map(),
    digests: new Map(),
    receiving: new Set(),
    waiters: new Map(),
    nextCacheId: 1,
    closed: false,
  };
}
