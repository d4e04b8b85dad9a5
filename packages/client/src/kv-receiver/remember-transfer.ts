import type { ReceivedKv } from "./kv-receiver-options";
import type { ReceiverState } from "./receiver-state";

/**
 * Records a committed transfer with its whole-cache digest (hex) and hands it to the `received()`
 * calls waiting for it. Bounded: past `maxRememberedTransfers` (default 1,024) the oldest is
 * dropped, and its transfer can no longer be deduplicated.
 */
export function rememberTransfer<Receipt>(
  state: ReceiverState<Receipt>,
  received: ReceivedKv<Receipt>,
  digestHex: string,
): void {
  const { committed, digests } = state;
  committed.set(received.transferId, received);
  digests.set(received.transferId, digestHex);
  if (committed.size > (state.options.maxRememberedTransfers ?? 1024)) {
    const oldest = committed.keys().next().value as string;
    committed.delete(oldest);
    digests.delete(oldest);
  }
  for (const waiter of [...(state.waiters.get(received.transferId) ?? [])]) {
    waiter.resolve(received);
  }
}
