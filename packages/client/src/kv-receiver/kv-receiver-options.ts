import type { KvDescriptor } from "@opal/kv";
import type { KvSink } from "../sinks/kv-sink";

/** A cache a device pushed and the receiver committed. */
export interface ReceivedKv<Receipt> {
  readonly transferId: string;
  readonly requestId: string;
  readonly descriptor: KvDescriptor;
  readonly receipt: Receipt;
  readonly firstTokenId: number;
  readonly firstTokenLogprob: number;
  readonly kvBytes: number;
  /** The receiver's id of the committed cache. */
  readonly cacheId: string;
}

/** Options of {@link createKvReceiver}. */
export interface KvReceiverOptions<Receipt> {
  /** A sink for each transfer; it sees the header's transfer id, request id and descriptor. */
  readonly createSink: (transfer: {
    transferId: string;
    requestId: string;
    descriptor: KvDescriptor;
  }) => KvSink<Receipt>;
  /** Interface to bind; default "127.0.0.1". */
  readonly host?: string;
  /** Port, an integer from 0 to 65,535; default 0 (any free port). */
  readonly port?: number;
  /**
   * Bearer tokens devices must present (`PushTarget.authorization_token`), non-empty strings;
   * default none required.
   */
  readonly tokens?: readonly string[];
  /** TLS: PEM certificate chain and key of the receiver. */
  readonly tls?: {
    readonly certChainPem: string | Uint8Array;
    readonly privateKeyPem: string | Uint8Array;
  };
  /**
   * Transfers received at once, an integer >= 1; more fail with RESOURCE_EXHAUSTED DEVICE_BUSY;
   * default 16.
   */
  readonly maxConcurrentTransfers?: number;
  /**
   * Transfers received at once from one sender, an integer >= 1; more fail with RESOURCE_EXHAUSTED
   * DEVICE_BUSY; default half of `maxConcurrentTransfers` (rounded up), so that one sender cannot
   * hold every slot. A sender is the bearer token it presented or, without `tokens`, its host.
   */
  readonly maxTransfersPerSender?: number;
  /**
   * Bytes all transfers may buffer at once, an integer >= 1; default 2 GiB. A transfer reserves, as
   * soon as its header arrives and before any chunk is read, one layer's bytes, or the whole cache's
   * when its sink keeps the layers' views (e.g. the memory sink); a reservation that does not fit
   * fails RESOURCE_EXHAUSTED DEVICE_BUSY (with a retry delay unless it can never fit).
   */
  readonly maxBufferedBytes?: number;
  /** Bytes one sender's transfers may buffer at once, an integer >= 1; default half of `maxBufferedBytes`. */
  readonly maxBufferedBytesPerSender?: number;
  /** Committed transfers remembered for `received()` and deduplication, an integer >= 1; default 1,024. */
  readonly maxRememberedTransfers?: number;
  /**
   * A transfer that sends no KV bytes for this long (counting from the call's start, the header,
   * and each chunk with data; empty messages and empty chunks do not count) is aborted with
   * DEADLINE_EXCEEDED and its sink discarded (PS-9), in ms: an integer from 1 to 2,147,483,647, or 0 for no timeout (not
   * recommended); default 30,000. Anything else is rejected with INVALID_ARGUMENT.
   */
  readonly idleTimeoutMs?: number;
  /** Largest message, in bytes (an integer from 1 to 2,147,483,647); default 64 MiB. */
  readonly maxMessageBytes?: number;
}

/** A running KvReceiver service (the decode side of push handoff). */
export interface KvReceiver<Receipt> {
  /** `host:port`: what a `PushTarget.address` names. */
  readonly address: string;
  /**
   * The committed cache of `transferId`, once a device pushed it; waits for it. Rejects with the
   * abort error when `options.signal` aborts or `timeoutMs` passes first (CANCELLED,
   * DEADLINE_EXCEEDED; INVALID_ARGUMENT for a bad `timeoutMs`), and with CANCELLED when the
   * receiver closes first or is closed.
   */
  received(
    transferId: string,
    options?: { signal?: AbortSignal; timeoutMs?: number },
  ): Promise<ReceivedKv<Receipt>>;
  /**
   * Stops accepting pushes, rejects every `received()` still waiting (CANCELLED), and resolves once
   * the transfers in progress have ended (each at most `idleTimeoutMs` after its last message).
   */
  close(): Promise<void>;
}
