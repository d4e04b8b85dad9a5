import { randomBytes } from "node:crypto";
import {
  Metadata,
  Server,
  ServerCredentials,
  type ServerReadableStream,
  type sendUnaryData,
} from "@grpc/grpc-js";
import { Code, OpalError, Reason } from "@opal/core";
import { toHex } from "@opal/kv";
import { KvReceiverServiceDefinition, type opal, toGrpcStatus } from "@opal/protocol";
import { type CollectedKv, collectKvStream } from "./collect-kv-stream";
import type { WireStream } from "./wire-client";

type PushRequest = opal.device.v1.PushKvRequest;
type PushResponse = opal.device.v1.PushKvResponse.$Properties;

/** One push the host received (committed or not). */
export interface ReceivedPush {
  readonly transferId: string;
  readonly header?: opal.device.v1.IPushKvHeader;
  readonly commit?: opal.device.v1.IPushKvCommit;
  /** The stream as checked by `collectKvStream` (header → accepted, commit → completed). */
  readonly collected: CollectedKv;
  /** The bearer token the sender presented, if any. */
  readonly token: string | undefined;
  /** Set when the push was committed. */
  readonly cacheId?: string;
  /** Why the host refused it, when it did. */
  readonly rejection?: string;
}

/** Options of {@link createKvReceiverHost}; every field is optional. */
export interface KvReceiverHostOptions {
  /** Interface to bind; default 127.0.0.1. */
  readonly host?: string;
  /** Bearer token senders must present; default none required. */
  readonly token?: string;
  /** Largest chunk accepted, in bytes; default 64 MiB. */
  readonly maxChunkBytes?: number;
}

/**
 * A `KvReceiverService` the suite hosts for push handoff: it checks each push as a receiver must
 * (`PS-6`: credentials, header first, canonical contiguous chunks with valid CRC32C, commit last
 * with the right total and digest), commits it atomically (`PS-7`, `PS-8`), deduplicates by
 * `transfer_id` (`PS-13`) and records everything for the tests to inspect.
 */
export interface KvReceiverHost {
  /** `host:port` to put in `PushTarget.address`. */
  readonly address: string;
  /** Every push received, in arrival order. */
  readonly pushes: readonly ReceivedPush[];
  /** Allows a transfer id; pushes of ids never expected fail ABORTED PUSH_REJECTED. */
  expect(transferId: string): void;
  close(): Promise<void>;
}

/** Starts a receiver host on a free port. */
export async function createKvReceiverHost(
  options: KvReceiverHostOptions = {},
): Promise<KvReceiverHost> {
  const pushes: ReceivedPush[] = [];
  const expected = new Set<string>();
  const committed = new Map<string, { cacheId: string; descriptor: string; digest: string }>();
  const server = new Server({ "grpc.max_receive_message_length": 67_174_400 + 65_536 });

  const fail = (callback: sendUnaryData<PushResponse>, error: OpalError) => {
    const status = toGrpcStatus(error);
    callback({
      code: status.code,
      details: status.details,
      metadata: status.metadata ?? new Metadata(),
      name: "",
      message: status.details,
    });
  };

  server.addService(KvReceiverServiceDefinition, {
    pushKv(
      call: ServerReadableStream<PushRequest, PushResponse>,
      callback: sendUnaryData<PushResponse>,
    ) {
      const auth = String(call.metadata.get("authorization")[0] ?? "");
      const token = /^bearer\s+(.+)$/i.exec(auth)?.[1];
      if (options.token && token !== options.token) {
        call.on("data", () => {});
        fail(
          callback,
          new OpalError(Code.UNAUTHENTICATED, "missing or unknown bearer token", {
            reason: Reason.TOKEN_INVALID,
          }),
        );
        return;
      }
      let header: opal.device.v1.IPushKvHeader | undefined;
      let commit: opal.device.v1.IPushKvCommit | undefined;
      let order = "";
      // Present the push as a KV stream: header → accepted, chunk → chunk, commit → completed.
      const stream: WireStream<opal.device.v1.PrefillResponse> = {
        cancel: () => call.destroy(),
        async *[Symbol.asyncIterator]() {
          let first = true;
          for await (const message of call as AsyncIterable<PushRequest>) {
            if (first && !message.header) order = "the first message is not a header";
            first = false;
            if (message.header) {
              header = message.header;
              yield {
                event: "accepted",
                accepted: { descriptor: message.header.descriptor ?? null },
              } as never;
            } else if (message.chunk) {
              yield { event: "chunk", chunk: message.chunk } as never;
            } else if (message.commit) {
              commit = message.commit;
              yield {
                event: "completed",
                completed: {
                  kvTotalBytes: message.commit.kvTotalBytes,
                  kvDigest: message.commit.kvDigest,
                },
              } as never;
            }
          }
        },
      };
      collectKvStream(stream, { chunkBytes: options.maxChunkBytes ?? 64 * 1024 * 1024 }).then(
        (collected) => {
          const transferId = header?.transferId ?? "";
          const record = (extra: Partial<ReceivedPush>) =>
            pushes.push({
              transferId,
              collected,
              token,
              ...(header ? { header } : {}),
              ...(commit ? { commit } : {}),
              ...extra,
            });
          const reject = (code: Code, reason: Reason, message: string) => {
            record({ rejection: `${reason}: ${message}` });
            fail(callback, new OpalError(code, message, { reason }));
          };
          if (order || !header?.transferId)
            return reject(
              Code.INVALID_ARGUMENT,
              Reason.INVALID_FIELD,
              order || "header.transfer_id is empty",
            );
          if (!expected.has(transferId))
            return reject(
              Code.ABORTED,
              Reason.PUSH_REJECTED,
              `transfer ${transferId} is not expected`,
            );
          if (!collected.descriptor)
            return reject(
              Code.INVALID_ARGUMENT,
              Reason.INVALID_FIELD,
              collected.violations.join("; ") || "invalid descriptor",
            );
          if (collected.error)
            return reject(
              Code.DATA_LOSS,
              Reason.STREAM_INCOMPLETE,
              `the push broke: ${collected.error.message}`,
            );
          const crc = collected.violations.find((v) => v.startsWith("PF-15"));
          if (crc) return reject(Code.DATA_LOSS, Reason.CHECKSUM_MISMATCH, crc);
          if (collected.violations.length > 0)
            return reject(
              Code.DATA_LOSS,
              Reason.STREAM_INCOMPLETE,
              collected.violations.join("; "),
            );
          if (!commit) return reject(Code.DATA_LOSS, Reason.STREAM_INCOMPLETE, "no commit");
          if (Number(commit.kvTotalBytes ?? 0) !== collected.receivedBytes) {
            return reject(
              Code.DATA_LOSS,
              Reason.STREAM_INCOMPLETE,
              `commit says ${commit.kvTotalBytes} bytes, received ${collected.receivedBytes}`,
            );
          }
          const digest = toHex(commit.kvDigest ?? new Uint8Array());
          if (digest !== collected.digestHex) {
            return reject(
              Code.DATA_LOSS,
              Reason.CHECKSUM_MISMATCH,
              `commit digest ${digest}, received bytes hash to ${collected.digestHex}`,
            );
          }
          const descriptor = JSON.stringify(collected.descriptor);
          const prior = committed.get(transferId);
          if (prior && (prior.descriptor !== descriptor || prior.digest !== digest)) {
            return reject(
              Code.ABORTED,
              Reason.PUSH_REJECTED,
              `transfer ${transferId} was committed with another cache`,
            );
          }
          const cacheId = prior?.cacheId ?? `cache-${randomBytes(8).toString("hex")}`;
          committed.set(transferId, { cacheId, descriptor, digest });
          record({ cacheId });
          callback(null, {
            transferId,
            committed: true,
            cacheId,
            receivedBytes: collected.receivedBytes,
          });
        },
      );
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${options.host ?? "127.0.0.1"}:0`,
      ServerCredentials.createInsecure(),
      (error, bound) => (error ? reject(error) : resolve(bound)),
    ),
  );
  return {
    address: `${options.host ?? "127.0.0.1"}:${port}`,
    pushes,
    expect: (transferId) => expected.add(transferId),
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2_000).unref();
      }),
  };
}
