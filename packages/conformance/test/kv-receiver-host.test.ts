import { Client, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import {
  checkStatusShape,
  createKvReceiverHost,
  decodeWireStatusDetails,
  type KvReceiverHost,
  type WireStatus,
} from "@opal/conformance";
import { createKvCache, createKvChunker, digestKvCache, type KvDescriptor } from "@opal/kv";
import {
  type opal,
  KvReceiverServiceDefinition as R,
  STATUS_DETAILS_TRAILER,
  toWireChunk,
  toWireDescriptor,
} from "@opal/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const descriptor: KvDescriptor = {
  modelFingerprint: "ab".repeat(32),
  numLayers: 2,
  attention: { kind: "mha", numKvHeads: 2, headDim: 4 },
  headRange: { start: 0, count: 2 },
  dtype: "bf16",
  scaleScheme: "none",
  layout: "nhd",
  tokenStart: 0,
  tokenCount: 3,
  blockSizeTokens: 16,
  numerics: {
    deviceKind: "reference",
    precisionPath: "f32",
    bitExact: true,
    maxAbsError: 0,
    maxRelError: 0,
  },
};

/** The worked example of docs/protocol/prefill.md §6: byte[i] = i mod 256, 16-byte chunks. */
function examplePush(
  transferId: string,
  corruptChunk?: number,
): opal.device.v1.PushKvRequest.$Properties[] {
  const cache = createKvCache(descriptor);
  let i = 0;
  for (let l = 0; l < 2; l++) {
    for (const p of ["k", "v"] as const) {
      const view = cache.part(l, p);
      for (let j = 0; j < view.length; j++) view[j] = i++ % 256;
    }
  }
  const chunker = createKvChunker(descriptor, { maxChunkBytes: 16 });
  const chunks = [...chunker.chunkLayer(cache.layer(0)), ...chunker.chunkLayer(cache.layer(1))].map(
    toWireChunk,
  );
  if (corruptChunk !== undefined) {
    const data = Uint8Array.from(chunks[corruptChunk]!.data!);
    data[0]! ^= 0xff;
    chunks[corruptChunk] = { ...chunks[corruptChunk], data };
  }
  return [
    {
      header: {
        transferId,
        requestId: `r-${transferId}`,
        descriptor: toWireDescriptor(descriptor),
      },
    },
    ...chunks.map((chunk) => ({ chunk })),
    { commit: { kvTotalBytes: 192, kvDigest: digestKvCache(cache), firstTokenId: 7 } },
  ];
}

function push(
  address: string,
  messages: opal.device.v1.PushKvRequest.$Properties[],
  token?: string,
) {
  const client = new Client(address, credentials.createInsecure());
  const metadata = new Metadata();
  if (token) metadata.set("authorization", `Bearer ${token}`);
  return new Promise<opal.device.v1.PushKvResponse>((resolve, reject) => {
    const call = client.makeClientStreamRequest(
      R.pushKv.path,
      R.pushKv.requestSerialize,
      R.pushKv.responseDeserialize,
      metadata,
      {},
      (error, response) => {
        client.close();
        if (error) reject(error);
        else resolve(response!);
      },
    );
    for (const m of messages) call.write(m);
    call.end();
  });
}

async function pushError(
  address: string,
  messages: opal.device.v1.PushKvRequest.$Properties[],
  token?: string,
) {
  const error = (await push(address, messages, token).then(
    () => undefined,
    (e: ServiceError) => e,
  )) as ServiceError | undefined;
  expect(error, "the push should fail").toBeDefined();
  return error!;
}

let host: KvReceiverHost;
beforeAll(async () => {
  host = await createKvReceiverHost({ token: "push-secret" });
});
afterAll(() => host.close());

describe("createKvReceiverHost (PS-6, PS-8, PS-13)", () => {
  it("commits a synthetic push of the worked example and records it", async () => {
    host.expect("t-ok");
    const response = await push(host.address, examplePush("t-ok"), "push-secret");
    expect(response).toMatchObject({ transferId: "t-ok", committed: true });
    expect(Number(response.receivedBytes)).toBe(192);
    const record = host.pushes.find((p) => p.transferId === "t-ok")!;
    expect(record.rejection).toBeUndefined();
    expect(record.collected.violations).toEqual([]);
    expect(record.collected.chunkCount).toBe(12);
    expect(record.collected.digestHex).toBe(
      // XXH3-128 of bytes 0..191, from Python's xxhash.xxh3_128 (docs/protocol/prefill.md §6).
      "10c987dc285c756b050f429c4f52b688",
    );
    expect(record.commit?.firstTokenId).toBe(7);
    expect(record.cacheId).toBe(response.cacheId);
    // PS-13: the same transfer again is answered with the same cache id.
    const again = await push(host.address, examplePush("t-ok"), "push-secret");
    expect(again.cacheId).toBe(response.cacheId);
  });

  it("rejects a corrupt chunk with DATA_LOSS CHECKSUM_MISMATCH (a well-formed status)", async () => {
    host.expect("t-bad");
    const error = await pushError(host.address, examplePush("t-bad", 4), "push-secret");
    expect(error.code).toBe(15);
    const status = toStatus(error);
    expect(status.details?.errorInfos[0]?.reason).toBe("CHECKSUM_MISMATCH");
    expect(checkStatusShape(status)).toEqual([]);
    expect(host.pushes.find((p) => p.transferId === "t-bad")?.rejection).toMatch(/PF-15/);
  });

  it("rejects unexpected transfers (ABORTED PUSH_REJECTED) and missing credentials (UNAUTHENTICATED)", async () => {
    expect((await pushError(host.address, examplePush("t-unknown"), "push-secret")).code).toBe(10);
    host.expect("t-noauth");
    expect((await pushError(host.address, examplePush("t-noauth"))).code).toBe(16);
  });

  it("rejects a push whose first message is not a header (INVALID_ARGUMENT)", async () => {
    const [, ...rest] = examplePush("t-order");
    expect((await pushError(host.address, rest, "push-secret")).code).toBe(3);
  });
});

/** The status a grpc-js client saw, decoded as the suite decodes device statuses. */
function toStatus(error: ServiceError): WireStatus {
  const bytes = error.metadata.get(STATUS_DETAILS_TRAILER)[0] as Uint8Array;
  return {
    code: error.code,
    message: error.details,
    details: decodeWireStatusDetails(bytes),
    messagesBefore: 0,
  };
}
