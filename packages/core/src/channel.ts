import { toAbortError } from "./call-options";
import { Code } from "./code";
import { OpalError } from "./opal-error";

/**
 * A bounded single-consumer queue that turns a push-based producer into an `AsyncIterable` with
 * back-pressure: `send` waits while `capacity` items are buffered.
 */
export interface Channel<T> extends AsyncIterable<T> {
  /**
   * Enqueues `value`; resolves once it fits in the buffer. Rejects with FAILED_PRECONDITION after
   * `close`/`fail`, or with the abort error when `signal` aborts first.
   */
  send(value: T, signal?: AbortSignal): Promise<void>;
  /** Ends the stream after the buffered items are consumed. Idempotent. */
  close(): void;
  /** Ends the stream with `error` after the buffered items; the consumer's next read throws it. */
  fail(error: unknown): void;
  /** Number of buffered items. */
  readonly size: number;
}

/** Options of {@link createChannel}. */
export interface ChannelOptions {
  /** Items buffered before `send` waits; default 16, at least 1. */
  readonly capacity?: number;
  /** Called once when the consumer stops early (break, return or throw in its loop). */
  readonly onCancel?: () => void;
}

interface Waiter {
  resolve(): void;
  reject(error: unknown): void;
}

/** Creates a {@link Channel}. Only one consumer may iterate it. */
export function createChannel<T>(options: ChannelOptions = {}): Channel<T> {
  const capacity = Math.max(1, options.capacity ?? 16);
  const buffer: T[] = [];
  const senders: Waiter[] = [];
  let reader: ((result: IteratorResult<T>) => void) | undefined;
  let readerReject: ((error: unknown) => void) | undefined;
  let ended = false;
  let failure: { error: unknown } | undefined;
  let cancelled = false;
  let iterating = false;

  const wakeReader = () => {
    if (!reader) return;
    const resolve = reader;
    const reject = readerReject!;
    if (buffer.length > 0) {
      reader = readerReject = undefined;
      resolve({ value: buffer.shift() as T, done: false });
      senders.shift()?.resolve();
    } else if (ended) {
      reader = readerReject = undefined;
      if (failure) reject(failure.error);
      else resolve({ value: undefined, done: true });
    }
  };

  const finish = (error?: { error: unknown }) => {
    if (ended) return;
    ended = true;
    failure = error;
    const closedError = new OpalError(Code.FAILED_PRECONDITION, "channel is closed");
    for (const waiter of senders.splice(0)) waiter.reject(closedError);
    wakeReader();
  };

  return {
    get size() {
      return buffer.length;
    },
    send(value, signal) {
      if (ended || cancelled) {
        return Promise.reject(new OpalError(Code.FAILED_PRECONDITION, "channel is closed"));
      }
      if (signal?.aborted) return Promise.reject(toAbortError(signal.reason));
      buffer.push(value);
      wakeReader();
      if (buffer.length <= capacity) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          const index = senders.indexOf(waiter);
          if (index >= 0) senders.splice(index, 1);
          reject(toAbortError(signal?.reason));
        };
        const waiter: Waiter = {
          resolve: () => {
            signal?.removeEventListener("abort", onAbort);
            resolve();
          },
          reject: (error) => {
            signal?.removeEventListener("abort", onAbort);
            reject(error);
          },
        };
        senders.push(waiter);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    },
    close() {
      finish();
    },
    fail(error) {
      finish({ error });
    },
    [Symbol.asyncIterator]() {
      if (iterating)
        throw new OpalError(Code.FAILED_PRECONDITION, "channel already has a consumer");
      iterating = true;
      return {
        next() {
          return new Promise<IteratorResult<T>>((resolve, reject) => {
            reader = resolve;
            readerReject = reject;
            wakeReader();
          });
        },
        return() {
          if (!cancelled && !ended) {
            cancelled = true;
            buffer.length = 0;
            finish();
            options.onCancel?.();
          }
          return Promise.resolve({ value: undefined, done: true });
        },
      };
    },
  };
}
