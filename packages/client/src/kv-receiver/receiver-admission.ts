import { Code, OpalError, Reason } from "@opal/core";

/** The limits a KvReceiver admits transfers by (PS-9), all resolved to numbers. */
export interface ReceiverLimits {
  readonly maxConcurrentTransfers: number;
  readonly maxTransfersPerSender: number;
  readonly maxBufferedBytes: number;
  readonly maxBufferedBytesPerSender: number;
}

/** What one admitted transfer holds; `release` gives it all back (idempotent). */
export interface Admission {
  /**
   * Reserves `bytes` the transfer will buffer, before it buffers them: RESOURCE_EXHAUSTED
   * DEVICE_BUSY (with a retry delay, or without one when `bytes` can never fit) when the sender's
   * or the receiver's budget has not that much left.
   */
  reserve(bytes: number): void;
  release(): void;
}

/**
 * Counts transfers and buffered bytes per sender and in total, so that one sender (a token, or a
 * host when the receiver takes no tokens) cannot hold every transfer slot or the whole buffer
 * budget: another sender's push still gets in.
 */
export function createReceiverAdmission(limits: ReceiverLimits): {
  admit(sender: string): Admission;
} {
  const transfers = new Map<string, number>();
  const buffered = new Map<string, number>();
  let totalTransfers = 0;
  let totalBytes = 0;
  const add = (map: Map<string, number>, key: string, n: number) => {
    const next = (map.get(key) ?? 0) + n;
    if (next === 0) map.delete(key);
    else map.set(key, next);
  };
  return {
    admit(sender) {
      if (
        totalTransfers >= limits.maxConcurrentTransfers ||
        (transfers.get(sender) ?? 0) >= limits.maxTransfersPerSender
      ) {
        throw busy(
          totalTransfers >= limits.maxConcurrentTransfers
            ? "too many transfers in progress"
            : `this sender has ${limits.maxTransfersPerSender} transfers in progress, its limit`,
          true,
        );
      }
      totalTransfers++;
      add(transfers, sender, 1);
      let reserved = 0;
      let released = false;
      return {
        reserve(bytes) {
          const cap = Math.min(limits.maxBufferedBytes, limits.maxBufferedBytesPerSender);
          if (bytes > cap) {
            throw busy(
              `the transfer needs ${bytes} bytes buffered, more than this receiver allows a sender (${cap})`,
              false,
            );
          }
          if (
            totalBytes + bytes > limits.maxBufferedBytes ||
            (buffered.get(sender) ?? 0) + bytes > limits.maxBufferedBytesPerSender
          ) {
            throw busy(`no room to buffer ${bytes} more bytes now`, true);
          }
          totalBytes += bytes;
          add(buffered, sender, bytes);
          reserved += bytes;
        },
        release() {
          if (released) return;
          released = true;
          totalTransfers--;
          add(transfers, sender, -1);
          totalBytes -= reserved;
          add(buffered, sender, -reserved);
        },
      };
    },
  };
}

function busy(message: string, retry: boolean): OpalError {
  return new OpalError(Code.RESOURCE_EXHAUSTED, message, {
    reason: Reason.DEVICE_BUSY,
    ...(retry ? { retryDelayMs: 50 } : {}),
  });
}

/**
 * The sender a push counts against: the index of the bearer token it presented, or, when the
 * receiver takes no tokens, its host as grpc-js reports the peer (`ipv4:10.0.0.5:41234` → the
 * address without the port; a unix socket as named).
 */
export function senderOf(tokenIndex: number, peer: string): string {
  if (tokenIndex >= 0) return `token ${tokenIndex}`;
  const host = /^(?:ipv4:|ipv6:)?\[?([^\]]*?)\]?:\d+$/.exec(peer)?.[1];
  return `host ${host ?? peer}`;
}
