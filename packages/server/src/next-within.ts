import { Code, OpalError, Reason } from "@opal/core";

/**
 * The next message of an upload, waiting at most `idleTimeoutMs`: an upload that sends nothing
 * for that long holds its slot and buffered bytes for nothing, so it fails DEADLINE_EXCEEDED
 * `DEADLINE_EXCEEDED` ("upload idle") and the call ends (models.md `MD-20`).
 */
export async function nextWithin<T>(
  messages: AsyncIterator<T>,
  idleTimeoutMs: number,
): Promise<IteratorResult<T>> {
  let timer: NodeJS.Timeout | undefined;
  const idle = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new OpalError(
            Code.DEADLINE_EXCEEDED,
            `upload idle: no LoadModel message for ${idleTimeoutMs} ms (uploadIdleTimeoutMs)`,
            { reason: Reason.DEADLINE_EXCEEDED },
          ),
        ),
      idleTimeoutMs,
    );
  });
  try {
    return await Promise.race([messages.next(), idle]);
  } finally {
    clearTimeout(timer);
  }
}
