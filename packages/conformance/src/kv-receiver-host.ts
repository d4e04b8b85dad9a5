import { randomBytes } from "node:crypto";
import { Code, OpalError, Reason } from "@opal/core";
import { toHex } from "@opal/kv";
import {
  createServiceImplementation,
  KvReceiverServiceDefinition,
  listenGrpc,
  opal,
  type ServiceContext,
} from "@opal/protocol";
import { type CollectedKv, collectKvStream } from "./collect-kv-stream";
import type { WireStream } from "./wire-client";

type PushRequest = opal.device.v1.PushKvRequest;
type PushResponse = opal.device.v1.PushKvResponse.$Properties;
/** A push's messages as a prefill's, for `collectKvStream`. */
const Response = opal.device.v1.PrefillResponse;

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

/** What the host keeps across pushes. */
interface HostState {
  readonly options: KvReceiverHostOptions;
  readonly pushes: ReceivedPush[];
  readonly expected: Set<string>;
  /** Committed transfers by id: their cache id, descriptor (as JSON) and digest (hex). */
  readonly committed: Map<string, { cacheId: string; descriptor: string; digest: string }>;
}

/** A push as read: its stream checked by `collectKvStream`, and its header and commit. */
interface ReadPush {
  readonly collected: CollectedKv;
  readonly header: opal.device.v1.IPushKvHeader | undefined;
  readonly commit: opal.device.v1.IPushKvCommit | undefined;
  /** Set when the first message was not a header. */
  readonly order: string;
}

/** Starts a receiver host on a free port. */
export async function createKvReceiverHost(
  options: KvReceiverHostOptions = {},
): Promise<KvReceiverHost> {
  const state: HostState = { options, pushes: [], expected: new Set(), committed: new Map() };
  const host = options.host ?? "127.0.0.1";
  const listener = await listenGrpc({
    address: `${host}:0`,
    transport: { maxReceiveMessageBytes: 67_174_400 + 65_536 },
    services: [
      createServiceImplementation(KvReceiverServiceDefinition, {
        pushKv: (requests, call) => receivePush(state, requests, call),
      }),
    ],
  });
  return {
    address: `${host}:${listener.port}`,
    pushes: state.pushes,
    expect: (transferId) => state.expected.add(transferId),
    close: () =>
      new Promise<void>((resolve) => {
        void listener.shutdown().then(resolve);
        setTimeout(() => {
          listener.forceShutdown();
          resolve();
        }, 2_000).unref();
      }),
  };
}

/** One PushKv call: checks the sender's token, reads the push, then judges and records it. */
async function receivePush(
  state: HostState,
  requests: AsyncIterable<PushRequest>,
  call: ServiceContext,
): Promise<PushResponse> {
  const auth = String(call.metadata.get("authorization")[0] ?? "");
  const token = /^bearer\s+(.+)$/i.exec(auth)?.[1];
  if (state.options.token && token !== state.options.token) {
    throw new OpalError(Code.UNAUTHENTICATED, "missing or unknown bearer token", {
      reason: Reason.TOKEN_INVALID,
    });
  }
  const push = await readPush(state.options, requests, call);
  const { collected, header, commit } = push;
  const transferId = header?.transferId ?? "";
  const record = (extra: Partial<ReceivedPush>) =>
    state.pushes.push({
      transferId,
      collected,
      token,
      ...(header ? { header } : {}),
      ...(commit ? { commit } : {}),
      ...extra,
    });
  const refusal = refusalOf(state, push);
  if (refusal) {
    record({ rejection: `${refusal.reason}: ${refusal.message}` });
    throw new OpalError(refusal.code, refusal.message, { reason: refusal.reason });
  }
  const descriptor = JSON.stringify(collected.descriptor);
  const digest = toHex(commit?.kvDigest ?? new Uint8Array());
  const cacheId =
    state.committed.get(transferId)?.cacheId ?? `cache-${randomBytes(8).toString("hex")}`;
  state.committed.set(transferId, { cacheId, descriptor, digest });
  record({ cacheId });
  return { transferId, committed: true, cacheId, receivedBytes: collected.receivedBytes };
}

/** Reads a push, presented as a KV stream: header → accepted, chunk → chunk, commit → completed. */
async function readPush(
  options: KvReceiverHostOptions,
  requests: AsyncIterable<PushRequest>,
  call: ServiceContext,
): Promise<ReadPush> {
  let header: opal.device.v1.IPushKvHeader | undefined;
  let commit: opal.device.v1.IPushKvCommit | undefined;
  let order = "";
  const stream: WireStream<opal.device.v1.PrefillResponse> = {
    cancel: () =>
      call.abort(new OpalError(Code.CANCELLED, "cancelled", { reason: Reason.CANCELLED })),
    async *[Symbol.asyncIterator]() {
      let first = true;
      for await (const message of requests) {
        if (first && !message.header) order = "the first message is not a header";
        first = false;
        if (message.header) {
          header = message.header;
          yield Response.create({ accepted: { descriptor: message.header.descriptor ?? null } });
        } else if (message.chunk) {
          yield Response.create({ chunk: message.chunk });
        } else if (message.commit) {
          commit = message.commit;
          yield Response.create({
            completed: {
              kvTotalBytes: message.commit.kvTotalBytes,
              kvDigest: message.commit.kvDigest,
            },
          });
        }
      }
    },
  };
  const collected = await collectKvStream(stream, {
    chunkBytes: options.maxChunkBytes ?? 64 * 1024 * 1024,
  });
  return { collected, header, commit, order };
}

/**
 * Why the host refuses a push, checked as a receiver must (`PS-6`, `PS-13`): order and transfer id,
 * expected, descriptor, a stream that broke, CRC32C, other stream violations, the commit's total
 * and digest, and a committed id pushed again with another cache; undefined: accepted.
 */
function refusalOf(
  state: HostState,
  { collected, header, commit, order }: ReadPush,
): { code: Code; reason: Reason; message: string } | undefined {
  const refuse = (code: Code, reason: Reason, message: string) => ({ code, reason, message });
  const transferId = header?.transferId ?? "";
  if (order || !header?.transferId)
    return refuse(
      Code.INVALID_ARGUMENT,
      Reason.INVALID_FIELD,
      order || "header.transfer_id is empty",
    );
  if (!state.expected.has(transferId))
    return refuse(Code.ABORTED, Reason.PUSH_REJECTED, `transfer ${transferId} is not expected`);
  if (!collected.descriptor)
    return refuse(
      Code.INVALID_ARGUMENT,
      Reason.INVALID_FIELD,
      collected.violations.join("; ") || "invalid descriptor",
    );
  if (collected.error)
    return refuse(
      Code.DATA_LOSS,
      Reason.STREAM_INCOMPLETE,
      `the push broke: ${collected.error.message}`,
    );
  const crc = collected.violations.find((v) => v.startsWith("PF-15"));
  if (crc) return refuse(Code.DATA_LOSS, Reason.CHECKSUM_MISMATCH, crc);
  if (collected.violations.length > 0)
    return refuse(Code.DATA_LOSS, Reason.STREAM_INCOMPLETE, collected.violations.join("; "));
  if (!commit) return refuse(Code.DATA_LOSS, Reason.STREAM_INCOMPLETE, "no commit");
  if (Number(commit.kvTotalBytes ?? 0) !== collected.receivedBytes) {
    return refuse(
      Code.DATA_LOSS,
      Reason.STREAM_INCOMPLETE,
      `commit says ${commit.kvTotalBytes} bytes, received ${collected.receivedBytes}`,
    );
  }
  const digest = toHex(commit.kvDigest ?? new Uint8Array());
  if (digest !== collected.digestHex) {
    return refuse(
      Code.DATA_LOSS,
      Reason.CHECKSUM_MISMATCH,
      `commit digest ${digest}, received bytes hash to ${collected.digestHex}`,
    );
  }
  const prior = state.committed.get(transferId);
  const descriptor = JSON.stringify(collected.descriptor);
  if (prior && (prior.descriptor !== descriptor || prior.digest !== digest)) {
    return refuse(
      Code.ABORTED,
      Reason.PUSH_REJECTED,
      `transfer ${transferId} was committed with another cache`,
    );
  }
  return undefined;
}
