import { timingSafeEqual } from "node:crypto";
import {
  Server,
  ServerCredentials,
  type ServerReadableStream,
  type sendUnaryData,
} from "@grpc/grpc-js";
import {
  type CallSignal,
  Code,
  createCallSignal,
  OpalError,
  Reason,
  toAbortError,
} from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import {
  assertWellFormed,
  fromWireChunk,
  fromWireDescriptor,
  KvReceiverServiceDefinition,
  type opal,
  toGrpcStatus,
  tolerantDeserializer,
} from "@opal/protocol";
import { assertIntegerOption, MAX_INT32, MAX_TIMER_MS } from "./assert-option";
import type { KvReceiver, KvReceiverOptions, ReceivedKv } from "./kv-receiver-options";
import type { KvSink } from "./kv-sink";
import { readKvStream, type StreamProgress } from "./read-kv-stream";
import { invalidOption } from "./sinks/sink-errors";
import { DEFAULT_IDLE_TIMEOUT_MS, withIdleTimeout } from "./with-idle-timeout";

type PushMessage = InstanceType<typeof opal.device.v1.PushKvRequest>;

/**
 * Hosts `opal.device.v1.KvReceiverService`: devices push caches into it (header, chunks, commit).
 * Each transfer goes to a fresh sink layer by layer; the receiver verifies every chunk's CRC32C,
 * the order, the size and the whole-cache digest before the sink commits, and aborts the sink on
 * any failure, so a broken push leaves nothing visible. A transfer id already committed is
 * acknowledged again without a second commit (devices may retry a push).
 */
export async function createKvReceiver<Receipt>(
  options: KvReceiverOptions<Receipt>,
): Promise<KvReceiver<Receipt>> {
  assertReceiverOptions(options);
  const maxMessageBytes = options.maxMessageBytes ?? 64 * 1024 * 1024;
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const server = new Server({
    "grpc.max_receive_message_length": maxMessageBytes,
    "grpc.max_send_message_length": maxMessageBytes,
  });
  const committed = new Map<string, ReceivedKv<Receipt>>();
  // `received()` calls waiting, by transfer id; each removes itself when it settles.
  const waiters = new Map<string, Set<Waiter<ReceivedKv<Receipt>>>>();
  let closed = false;
  const tokens = (options.tokens ?? []).map((t) => Buffer.from(t));
  let active = 0;
  let nextCacheId = 1;

  const authorized = (header: string | undefined) => {
    if (tokens.length === 0) return true;
    const given = Buffer.from(/^Bearer (.+)$/i.exec(header ?? "")?.[1] ?? "");
    let ok = false;
    for (const token of tokens)
      if (token.length === given.length && timingSafeEqual(token, given)) ok = true;
    return ok;
  };

  async function pushKv(
    call: ServerReadableStream<PushMessage, unknown>,
    callback: sendUnaryData<unknown>,
  ) {
    let sink: KvSink<Receipt> | undefined;
    let opened = false;
    active++;
    // A device that gives up cancels the call; end our read of it so the sink is aborted.
    call.on("cancelled", () =>
      call.destroy(
        new OpalError(Code.CANCELLED, "the device cancelled the push", {
          reason: Reason.CANCELLED,
        }),
      ),
    );
    try {
      if (!authorized(call.metadata.get("authorization")[0] as string | undefined)) {
        throw new OpalError(Code.UNAUTHENTICATED, "invalid or missing bearer token", {
          reason: Reason.TOKEN_INVALID,
        });
      }
      if (active > (options.maxConcurrentTransfers ?? 16)) {
        throw new OpalError(Code.RESOURCE_EXHAUSTED, "too many transfers in progress", {
          reason: Reason.DEVICE_BUSY,
          retryDelayMs: 50,
        });
      }
      const messages = withIdleTimeout(
        call[Symbol.asyncIterator]() as AsyncIterator<PushMessage>,
        idleTimeoutMs,
      );
      const first = await messages.next();
      if (!first.done) assertWellFormed(first.value);
      const header = first.done ? undefined : first.value.header;
      if (!header?.transferId || !header.descriptor) {
        throw new OpalError(
          Code.INVALID_ARGUMENT,
          "the first PushKv message must be a header with transfer_id and descriptor",
          {
            reason: Reason.INVALID_FIELD,
            fieldViolations: [{ field: "header", description: "required as the first message" }],
          },
        );
      }
      const descriptor = fromWireDescriptor(header.descriptor, "header.descriptor");
      const again = committed.get(header.transferId);
      if (again) {
        // A device may retry a push; anything else under a committed id is refused (PS-13).
        const sameCache =
          again.requestId === (header.requestId ?? "") &&
          JSON.stringify(again.descriptor) === JSON.stringify(descriptor);
        if (!sameCache) {
          throw new OpalError(
            Code.ABORTED,
            `transfer ${header.transferId} was already committed with another cache`,
            {
              reason: Reason.PUSH_REJECTED,
            },
          );
        }
        for (;;) if ((await messages.next()).done) break;
        callback(null, {
          transferId: again.transferId,
          committed: true,
          cacheId: again.cacheId,
          receivedBytes: again.kvBytes,
        });
        return;
      }
      sink = options.createSink({
        transferId: header.transferId,
        requestId: header.requestId ?? "",
        descriptor,
      });
      let commit: opal.device.v1.PushKvCommit.$Properties | undefined;
      // The push as the event stream readKvStream checks: accepted, chunks, completed.
      async function* events() {
        yield {
          type: "accepted" as const,
          descriptor,
          kvHandle: "",
          leaseExpiryUnixMs: 0,
          queueTimeUs: 0,
        };
        for (;;) {
          const next = await messages.next();
          if (next.done) return;
          assertWellFormed(next.value);
          if (next.value.chunk)
            yield { type: "chunk" as const, chunk: fromWireChunk(next.value.chunk) };
          else if (next.value.commit) {
            const c = next.value.commit;
            commit = c;
            const stats: PrefillStats = {
              ...{
                promptTokens: 0,
                prefixCacheHitTokens: 0,
                decoderPrefixTokens: 0,
                deviceTimeUs: 0,
              },
              ...{ queueTimeUs: 0, energyJoules: 0, leaseExpiryUnixMs: 0, timeToFirstChunkUs: 0 },
              firstTokenId: c.firstTokenId ?? 0,
              firstTokenLogprob: c.firstTokenLogprob ?? 0,
              kvTotalBytes: Number(c.kvTotalBytes ?? 0),
              kvDigest: c.kvDigest ?? new Uint8Array(),
            };
            yield { type: "completed" as const, stats };
            return;
          }
        }
      }
      const progress: StreamProgress = { attemptStartedAt: performance.now() };
      const outcome = await readKvStream(events(), progress, {
        onAccepted: async (d) => {
          opened = true;
          await sink!.open(d);
        },
        onLayer: async (layer) => {
          await sink!.writeLayer(layer);
        },
        reuseLayerBuffers: () => !sink!.keepsLayerViews,
        // Chunks are this server's freshly received messages.
        ownsChunks: true,
      });
      if (outcome.kind === "broken") throw outcome.error;
      if (!commit)
        throw new OpalError(Code.DATA_LOSS, "the push ended without a commit", {
          reason: Reason.STREAM_INCOMPLETE,
        });
      const receipt = await sink.commit(outcome.stats);
      const received: ReceivedKv<Receipt> = {
        transferId: header.transferId,
        requestId: header.requestId ?? "",
        descriptor,
        receipt,
        firstTokenId: commit.firstTokenId ?? 0,
        firstTokenLogprob: commit.firstTokenLogprob ?? 0,
        kvBytes: outcome.stats.kvTotalBytes,
        cacheId: `cache-${nextCacheId++}`,
      };
      committed.set(header.transferId, received);
      // Bounded: the oldest receipts are dropped (their transfers can no longer be deduplicated).
      if (committed.size > (options.maxRememberedTransfers ?? 1024)) {
        committed.delete(committed.keys().next().value as string);
      }
      for (const waiter of [...(waiters.get(header.transferId) ?? [])]) waiter.resolve(received);
      callback(null, {
        transferId: received.transferId,
        committed: true,
        cacheId: received.cacheId,
        receivedBytes: received.kvBytes,
      });
    } catch (error) {
      if (opened && sink) await sink.abort(error);
      callback(toGrpcStatus(OpalError.from(error)));
    } finally {
      active--;
    }
  }

  // Pushes that do not parse reach the handler, which answers INVALID_ARGUMENT with ErrorInfo (ERR-2).
  const definition = {
    pushKv: {
      ...KvReceiverServiceDefinition.pushKv,
      requestDeserialize: tolerantDeserializer(
        "PushKvRequest",
        KvReceiverServiceDefinition.pushKv.requestDeserialize,
      ),
    },
  };
  server.addService(definition, { pushKv });
  const host = options.host ?? "127.0.0.1";
  const creds = options.tls
    ? ServerCredentials.createSsl(null, [
        {
          cert_chain: Buffer.from(options.tls.certChainPem),
          private_key: Buffer.from(options.tls.privateKeyPem),
        },
      ])
    : ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${options.port ?? 0}`, creds, (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  return {
    address: `${host}:${port}`,
    received(transferId, wait = {}) {
      const done = committed.get(transferId);
      if (done) return Promise.resolve(done);
      if (closed) return Promise.reject(receiverClosed());
      let scope: CallSignal;
      try {
        scope = createCallSignal(wait);
      } catch (error) {
        return Promise.reject(error);
      }
      return new Promise((resolve, reject) => {
        const list = waiters.get(transferId) ?? new Set();
        waiters.set(transferId, list);
        const settled = () => {
          scope.dispose();
          scope.signal.removeEventListener("abort", onAbort);
          list.delete(waiter);
          if (list.size === 0 && waiters.get(transferId) === list) waiters.delete(transferId);
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
    },
    close() {
      closed = true;
      for (const list of [...waiters.values()])
        for (const waiter of [...list]) waiter.reject(receiverClosed());
      return new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    },
  };
}

/** A `received()` call waiting for its transfer. */
interface Waiter<T> {
  resolve(value: T): void;
  reject(error: OpalError): void;
}

function receiverClosed(): OpalError {
  return new OpalError(Code.CANCELLED, "the KvReceiver was closed", { reason: Reason.CANCELLED });
}

/**
 * Checks {@link KvReceiverOptions}: INVALID_ARGUMENT INVALID_FIELD naming the first bad field,
 * what it expects and what it got; `undefined` fields take their defaults.
 */
function assertReceiverOptions(options: KvReceiverOptions<unknown>): void {
  if (typeof options?.createSink !== "function")
    throw invalidOption("createSink", "a function", options?.createSink);
  if (options.host !== undefined && (typeof options.host !== "string" || options.host === ""))
    throw invalidOption("host", "a non-empty host name or address", options.host);
  if (options.port !== undefined) assertIntegerOption("port", options.port, 0, 65_535);
  const tokens: unknown = options.tokens;
  if (tokens !== undefined) {
    if (!Array.isArray(tokens)) throw invalidOption("tokens", "an array of strings", tokens);
    tokens.forEach((token, i) => {
      if (typeof token !== "string" || token === "")
        throw invalidOption(`tokens[${i}]`, "a non-empty string", token);
    });
  }
  if (options.maxConcurrentTransfers !== undefined)
    assertIntegerOption("maxConcurrentTransfers", options.maxConcurrentTransfers, 1);
  if (options.maxRememberedTransfers !== undefined)
    assertIntegerOption("maxRememberedTransfers", options.maxRememberedTransfers, 1);
  if (options.idleTimeoutMs !== undefined)
    assertIntegerOption("idleTimeoutMs", options.idleTimeoutMs, 0, MAX_TIMER_MS);
  if (options.maxMessageBytes !== undefined)
    assertIntegerOption("maxMessageBytes", options.maxMessageBytes, 1, MAX_INT32);
}
