import {
  createServiceImplementation,
  KvReceiverServiceDefinition,
  listenGrpc,
} from "@opal/protocol";
import { assertReceiverOptions } from "./assert-receiver-options";
import type { KvReceiver, KvReceiverOptions } from "./kv-receiver-options";
import { receiverClosed } from "./receiver-closed";
import { createReceiverState } from "./receiver-state";
import { servePush } from "./serve-push";
import { waitForTransfer } from "./wait-for-transfer";

/**
 * Hosts `opal.device.v1.KvReceiverService`: devices push caches into it (header, chunks, commit).
 * Each transfer goes to a fresh sink layer by layer; the receiver verifies every chunk's CRC32C,
 * the order, the size and the whole-cache digest before the sink commits, and aborts the sink on
 * any failure, so a broken push leaves nothing visible. A transfer id is single-use (PS-13): a
 * second push under an id being received is refused, and a push under a committed id is
 * acknowledged with the earlier cache id only when it verifies as the same cache (devices may retry
 * a push); anything else fails ABORTED PUSH_REJECTED. Idle means no KV bytes: only the header,
 * chunks with data and the commit extend the idle timeout (PS-9). Transfers and buffered bytes are
 * bounded per sender (the token it presented, or its host) and in total, checked before buffering.
 * Pushes that do not parse fail INVALID_ARGUMENT with ErrorInfo (ERR-2).
 */
export async function createKvReceiver<Receipt>(
  options: KvReceiverOptions<Receipt>,
): Promise<KvReceiver<Receipt>> {
  assertReceiverOptions(options);
  const state = createReceiverState(options);
  const maxMessageBytes = options.maxMessageBytes ?? 64 * 1024 * 1024;
  const host = options.host ?? "127.0.0.1";
  const listener = await listenGrpc({
    address: `${host}:${options.port ?? 0}`,
    ...(options.tls ? { tls: options.tls } : {}),
    transport: { maxReceiveMessageBytes: maxMessageBytes, maxSendMessageBytes: maxMessageBytes },
    services: [
      createServiceImplementation(KvReceiverServiceDefinition, {
        pushKv: (requests, call) => servePush(state, requests, call),
      }),
    ],
  });
  return {
    address: `${host}:${listener.port}`,
    received: (transferId, wait = {}) => waitForTransfer(state, transferId, wait),
    close() {
      state.closed = true;
      for (const list of [...state.waiters.values()])
        for (const waiter of [...list]) waiter.reject(receiverClosed());
      return listener.shutdown();
    },
  };
}
