import { type CallOptions, type CallSignal, createCallSignal, toAbortError } from "@opal/core";
import type { ReceivedKv } from "./kv-receiver-options";
import { receiverClosed } from "./receiver-closed";
import type { ReceiverState, Waiter } from "./receiver-state";

/**
 * `KvReceiver.received`: the committed transfer `transferId`, at once when it is remembered, else
 * once it commits; rejects when `wait` aborts or times out, and CANCELLED when the receiver is or
 * gets closed first.
 */
export function waitForTransfer<Receipt>(
  state: ReceiverState<Receipt>,
  transferId: string,
  wait: CallOptions,
): Promise<ReceivedKv<Receipt>> {
  const done = state.committed.get(transferId);
  if (done) return Promise.resolve(done);
  if (state.closed) return Promise.reject(receiverClosed());
  let scope: CallSignal;
  try {
    scope = createCallSignal(wait);
  } catch (error) {
    return Promise.reject(error);
  }
  return new Promise((resolve, reject) => {
    const list = state.waiters.get(transferId) ?? new Set();
    state.waiters.set(transferId, list);
    const settled = () => {
      scope.dispose();
      scope.signal.removeEventListener("abort", onAbort);
      list.delete(waiter);
      if (list.size === 0 && state.waiters.get(transferId) === list) {
        state.waiters.delete(transferId);
      }
    };
    const waiter: Waiter<ReceivedKv<Receipt>> = {
      resolve(received) {
        settled();
        resolve(received);
      },
      reject(error) {
        settled();
        reject(error);
      },
    };
    const onAbort = () => waiter.reject(toAbortError(scope.signal.reason));
    list.add(waiter);
    if (scope.signal.aborted) onAbort();
    else scope.signal.addEventListener("abort", onAbort, { once: true });
  });
}
