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
  MAX_TIMER_MS,
  OpalError,
  Reason,
  toAbortError,
} from "@opal/core";
import { cacheByteLength, layerByteLength, toHex } from "@opal/kv";
import {
  KvReceiverServiceDefinition,
  type opal,
  toGrpcStatus,
  tolerantDeserializer,
} from "@opal/protocol";
import { assertIntegerOption, MAX_INT32 } from "./assert-option";
import type { KvReceiver, KvReceiverOptions, ReceivedKv } from "./kv-receiver-options";
import type { KvSink } from "./kv-sink";
import { confirmRepeat, readHeader, receive } from "./receive-push";
import { type Admission, createReceiverAdmission, senderOf } from "./receiver-admission";
import { invalidOption } from "./sinks/sink-errors";
import { DEFAULT_IDLE_TIMEOUT_MS, withIdleTimeout } from "./with-idle-timeout";

type PushMessage = InstanceType<typeof opal.device.v1.PushKvRequest>;

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
  const maxConcurrentTransfers = options.maxConcurrentTransfers ?? 16;
  const maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
  let nextCacheId = 1;

  const admission = createReceiverAdmission({
    maxConcurrentTransfers,
    maxTransfersPerSender: options.maxTransfersPerSender ?? Math.ceil(maxConcurrentTransfers / 2),
    maxBufferedBytes,
    maxBufferedBytesPerSender: options.maxBufferedBytesPerSender ?? Math.ceil(maxBufferedBytes / 2),
  });
  // Transfer ids being received now: a second push under one of them is refused (PS-13).
  const receiving = new Set<string>();
  // The whole-cache digest (hex) of each remembered committed transfer.
  const digests = new Map<string, string>();

  /** The index of the token presented, -1 when none is required, undefined when refused. */
  const matchToken = (header: string | undefined): number | undefined => {
    if (tokens.length === 0) return -1;
    const given = Buffer.from(/^Bearer (.+)$/i.exec(header ?? "")?.[1] ?? "");
    let match: number | undefined;
    tokens.forEach((token, i) => {
      if (token.length === given.length && timingSafeEqual(token, given)) match = i;
    });
    return match;
  };

  async function pushKv(
    call: ServerReadableStream<PushMessage, unknown>,
    callback: sendUnaryData<unknown>,
  ) {
    let sink: KvSink<Receipt> | undefined;
    let opened = false;
    let admitted: Admission | undefined;
    let claimed: string | undefined;
    // A device that gives up cancels the call; end our read of it so the sink is aborted.
    call.on("cancelled", () =>
      call.destroy(
        new OpalError(Code.CANCELLED, "the device cancelled the push", {
          reason: Reason.CANCELLED,
        }),
      ),
    );
    try {
      const token = matchToken(call.metadata.get("authorization")[0] as string | undefined);
      if (token === undefined) {
        throw new OpalError(Code.UNAUTHENTICATED, "invalid or missing bearer token", {
          reason: Reason.TOKEN_INVALID,
        });
      }
      admitted = admission.admit(senderOf(token, call.getPeer()));
      // Idle means no KV bytes (PS-9): only the header, chunks with data and the commit count.
      let headerSeen = false;
      const messages = withIdleTimeout(
        call[Symbol.asyncIterator]() as AsyncIterator<PushMessage>,
        idleTimeoutMs,
        (m) => {
          if (m.header && !headerSeen) {
            headerSeen = true;
            return true;
          }
          return (m.chunk?.data?.byteLength ?? 0) > 0 || Boolean(m.commit);
        },
      );
      const { header, descriptor } = await readHeader(messages);
      const transferId = header.transferId as string;
      if (receiving.has(transferId)) {
        throw new OpalError(
          Code.ABORTED,
          `transfer ${transferId} is being received by another push; a transfer id is single-use (PS-13)`,
          { reason: Reason.PUSH_REJECTED },
        );
      }
      receiving.add(transferId);
      claimed = transferId;
      const again = committed.get(transferId);
      if (again) {
        // A device may retry a push: the same cache, verified again, gets the earlier cache id.
        admitted.reserve(layerByteLength(descriptor));
        await confirmRepeat(again, descriptor, digests.get(transferId) ?? "", messages);
        callback(null, {
          transferId: again.transferId,
          committed: true,
          cacheId: again.cacheId,
          receivedBytes: again.kvBytes,
        });
        return;
      }
      const created = options.createSink({
        transferId,
        requestId: header.requestId ?? "",
        descriptor,
      });
      // Reserved before any chunk is read: a layer being assembled, or the whole cache when the
      // sink keeps the layers' views.
      admitted.reserve(
        created.keepsLayerViews ? cacheByteLength(descriptor) : layerByteLength(descriptor),
      );
      sink = created;
      const { outcome, commit } = await receive(descriptor, messages, {
        onAccepted: async (d) => {
          opened = true;
          await created.open(d);
        },
        onLayer: async (layer) => {
          await created.writeLayer(layer);
        },
        reuseLayerBuffers: () => !created.keepsLayerViews,
      });
      const receipt = await created.commit(outcome.stats);
      const received: ReceivedKv<Receipt> = {
        transferId,
        requestId: header.requestId ?? "",
        descriptor,
        receipt,
        firstTokenId: commit.firstTokenId ?? 0,
        firstTokenLogprob: commit.firstTokenLogprob ?? 0,
        kvBytes: outcome.stats.kvTotalBytes,
        cacheId: `cache-${nextCacheId++}`,
      };
      committed.set(transferId, received);
      digests.set(transferId, toHex(outcome.stats.kvDigest));
      // Bounded: the oldest receipts are dropped (their transfers can no longer be deduplicated).
      if (committed.size > (options.maxRememberedTransfers ?? 1024)) {
        const oldest = committed.keys().next().value as string;
        committed.delete(oldest);
        digests.delete(oldest);
      }
      for (const waiter of [...(waiters.get(transferId) ?? [])]) waiter.resolve(received);
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
      admitted?.release();
      if (claimed !== undefined) receiving.delete(claimed);
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

/** 2 GiB: the default of `KvReceiverOptions.maxBufferedBytes`. */
const DEFAULT_MAX_BUFFERED_BYTES = 2 ** 31;

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
  if (options.maxTransfersPerSender !== undefined)
    assertIntegerOption("maxTransfersPerSender", options.maxTransfersPerSender, 1);
  if (options.maxBufferedBytes !== undefined)
    assertIntegerOption("maxBufferedBytes", options.maxBufferedBytes, 1);
  if (options.maxBufferedBytesPerSender !== undefined)
    assertIntegerOption("maxBufferedBytesPerSender", options.maxBufferedBytesPerSender, 1);
  if (options.maxRememberedTransfers !== undefined)
    assertIntegerOption("maxRememberedTransfers", options.maxRememberedTransfers, 1);
  if (options.idleTimeoutMs !== undefined)
    assertIntegerOption("idleTimeoutMs", options.idleTimeoutMs, 0, MAX_TIMER_MS);
  if (options.maxMessageBytes !== undefined)
    assertIntegerOption("maxMessageBytes", options.maxMessageBytes, 1, MAX_INT32);
}
