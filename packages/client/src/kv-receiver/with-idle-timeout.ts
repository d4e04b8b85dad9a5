import { Code, OpalError, Reason } from "@opal/core";

/** PS-9's recommended idle timeout, in ms. */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

/**
 * `messages` whose every `next()` fails with DEADLINE_EXCEEDED once `idleMs` have passed since the
 * start or since the last message `isProgress` accepts (the caller's error path then answers the
 * call, which ends it). Messages that are not progress do not extend the deadline, so a peer
 * cannot keep a call alive by sending empty messages. 0: no timeout.
 */
export function withIdleTimeout<T>(
  messages: AsyncIterator<T>,
  idleMs: number,
  isProgress: (message: T) => boolean = () => true,
): { next(): Promise<IteratorResult<T>> } {
  if (idleMs === 0) return messages;
  let deadline = performance.now() + idleMs;
  const idle = () =>
    new OpalError(
      Code.DEADLINE_EXCEEDED,
      `the push sent no KV bytes for ${idleMs} ms; transfer aborted (PS-9)`,
      { reason: Reason.DEADLINE_EXCEEDED },
    );
  return {
    async next() {
      const remaining = deadline - performance.now();
      if (remaining <= 0) throw idle();
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(idle()), Math.ceil(remaining));
      });
      const result = await Promise.race([messages.next(), expired]).finally(() =>
        clearTimeout(timer),
      );
      if (!result.done && isProgress(result.value)) deadline = performance.now() + idleMs;
      return result;
    },
  };
}
