import { Code, OpalError, Reason } from "@opal/core";

/** PS-9's recommended idle timeout, in ms. */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

/**
 * `messages` whose every `next()` fails with DEADLINE_EXCEEDED when no message arrives within
 * `idleMs` (the caller's error path then answers the call, which ends it); 0: no timeout.
 */
export function withIdleTimeout<T>(
  messages: AsyncIterator<T>,
  idleMs: number,
): { next(): Promise<IteratorResult<T>> } {
  if (idleMs === 0) return messages;
  return {
    next() {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(
            new OpalError(
              Code.DEADLINE_EXCEEDED,
              `the push sent nothing for ${idleMs} ms; transfer aborted (PS-9)`,
              { reason: Reason.DEADLINE_EXCEEDED },
            ),
          );
        }, idleMs);
      });
      return Promise.race([messages.next(), idle]).finally(() => clearTimeout(timer));
    },
  };
}
