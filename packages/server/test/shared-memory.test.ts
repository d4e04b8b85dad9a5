import { execFileSync } from "node:child_process";
import {
  closeSync,
  ftruncateSync,
  linkSync,
  openSync,
  readFileSync,
  symlinkSync,
  unlinkSync,
} from "node:fs";
import {
  Client,
  type ClientReadableStream,
  credentials as grpcCredentials,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";
import { Code } from "@opal/core";
import { crc32cOf, partsOf, toHex } from "@opal/kv";
import { createMockDevice } from "@opal/mock";
import {
  DeviceServiceDefinition,
  fromGrpcStatus,
  fromWireCapabilities,
  type opal,
  SHARED_MEMORY_DIRECTORY,
  toWirePrefillRequest,
} from "@opal/protocol";
import { collectPrefill } from "@opal/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createDeviceServer, type DeviceServer } from "../src/index";
import { tinyRequest } from "./fixtures";

type Response = opal.device.v1.PrefillResponse;
type Offer = opal.device.v1.SharedMemoryRegion.$Properties;

const linux = process.platform === "linux";
const created: string[] = [];

/** A region file in /dev/shm of `bytes` bytes; removed after each test. */
function region(bytes: number, suffix = ""): { name: string; path: string } {
  const base = `opal-server-test-${process.pid}-${created.length}${suffix}`;
  const path = `${SHARED_MEMORY_DIRECTORY}/${base}`;
  const fd = openSync(path, "w+", 0o600);
  ftruncateSync(fd, bytes);
  closeSync(fd);
  created.push(path);
  return { name: `/${base}`, path };
}

/** Every message of a raw Prefill offering `offer`, or the status it failed with. */
function rawPrefill(
  address: string,
  offer: Offer | undefined,
  patch: Parameters<typeof tinyRequest>[0] = {},
): Promise<{ messages: Response[]; error?: ServiceError }> {
  const client = new Client(address, grpcCredentials.createInsecure());
  const method = DeviceServiceDefinition.prefill;
  const request = {
    ...toWirePrefillRequest(tinyRequest(patch)),
    ...(offer ? { dataPlane: { sharedMemory: offer } } : {}),
  };
  const messages: Response[] = [];
  return new Promise<{ messages: Response[]; error?: ServiceError }>((resolve) => {
    const stream: ClientReadableStream<Response> = client.makeServerStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      request,
      new Metadata(),
      { deadline: Date.now() + 10_000 },
    );
    stream.on("data", (m: Response) => messages.push(m));
    stream.on("error", (error: ServiceError) => resolve({ messages, error }));
    stream.on("end", () => resolve({ messages }));
  }).finally(() => client.close());
}

/** The code and the first field violation of a failed call. */
function violation(error: ServiceError | undefined): { code?: number; field?: string } {
  if (!error) return {};
  const rich = fromGrpcStatus(error);
  return { code: rich.code, field: rich.fieldViolations[0]?.field };
}

afterEach(() => {
  for (const path of created.splice(0)) unlinkSync(path);
});

describe.skipIf(!linux)("shared-memory data plane (PF-41..43)", () => {
  let server: DeviceServer;
  let inlineServer: DeviceServer;
  beforeAll(async () => {
    server = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }), {
      sharedMemory: true,
    });
    inlineServer = await createDeviceServer(createMockDevice({ models: ["opal-tiny"] }));
  });
  afterAll(async () => {
    await server.shutdown({ graceMs: 0 });
    await inlineServer.shutdown({ graceMs: 0 });
  });

  it("declares the plane only when the host offers it", async () => {
    const planes = async (address: string) => {
      const client = new Client(address, grpcCredentials.createInsecure());
      const m = DeviceServiceDefinition.getCapabilities;
      const response = await new Promise<opal.device.v1.GetCapabilitiesResponse>((ok, fail) =>
        client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, {}, (e, r) =>
          e ? fail(e) : ok(r!),
        ),
      );
      client.close();
      return fromWireCapabilities(response.capabilities ?? {}).dataPlanes;
    };
    expect(await planes(server.address)).toContain("shared_memory");
    expect(await planes(inlineServer.address)).not.toContain("shared_memory");
  });

  it("writes each chunk at its canonical offset and sends only references, CRC over the region's bytes", async () => {
    const { name, path } = region(1 << 20);
    const offer = { name, offsetBytes: 4096, lengthBytes: (1 << 20) - 4096 };
    const { messages, error } = await rawPrefill(server.address, offer);
    expect(error).toBeUndefined();
    const bytes = readFileSync(path);
    const chunks = messages.filter((m) => m.chunk).map((m) => m.chunk!);
    expect(chunks.length).toBeGreaterThan(1);
    let canonical = 0;
    for (const chunk of chunks) {
      expect(chunk.data?.byteLength ?? 0).toBe(0);
      const offset = Number(chunk.dataRef!.offsetBytes);
      const length = Number(chunk.dataRef!.lengthBytes);
      expect(offset).toBe(4096 + canonical);
      expect(crc32cOf(bytes.subarray(offset, offset + length))).toBe(chunk.crc32c);
      canonical += length;
    }
    // The same request inline: the region holds exactly the bytes the stream would have carried.
    const inline = await collectPrefill(
      createMockDevice({ models: ["opal-tiny"] }).prefill(tinyRequest()),
    );
    expect(canonical).toBe(inline.stats.kvTotalBytes);
    expect(bytes.subarray(0, 4096).every((b) => b === 0)).toBe(true);
    const completed = messages.at(-1)!.completed!;
    expect(toHex(completed.kvDigest ?? new Uint8Array())).toBe(toHex(inline.stats.kvDigest));
    const inlineBytes = inline.layers.flatMap((layer) =>
      partsOf(inline.descriptor).map((part) => layer.parts[part]),
    );
    expect(Buffer.concat(inlineBytes as Uint8Array[])).toEqual(
      bytes.subarray(4096, 4096 + canonical),
    );
  });

  it("fails UNIMPLEMENTED UNSUPPORTED_FEATURE where the host does not offer it (PF-41)", async () => {
    const { name } = region(1 << 20);
    const { error, messages } = await rawPrefill(inlineServer.address, {
      name,
      lengthBytes: 1 << 20,
    });
    expect(messages).toEqual([]);
    expect(violation(error)).toEqual({ code: Code.UNIMPLEMENTED, field: "data_plane" });
  });

  it.each([
    ["a name outside /dev/shm", "/../etc/passwd"],
    ["a name without the slash", "opal-x"],
    ["a nested name", "/a/b"],
    ["a region that does not exist", "/opal-server-test-missing"],
    ["another program's shared memory (no /opal- prefix)", "/torch_12345"],
  ])("rejects %s: INVALID_ARGUMENT on the name, before accepted", async (_what, name) => {
    const { error, messages } = await rawPrefill(server.address, { name, lengthBytes: 1 << 20 });
    expect(messages).toEqual([]);
    expect(violation(error)).toEqual({
      code: Code.INVALID_ARGUMENT,
      field: "data_plane.shared_memory.name",
    });
  });

  it("does not follow a symbolic link", async () => {
    const target = region(1 << 20);
    const link = `${target.path}-link`;
    symlinkSync(target.path, link);
    created.push(link);
    const { error } = await rawPrefill(server.address, {
      name: `${target.name}-link`,
      lengthBytes: 1 << 20,
    });
    expect(violation(error).field).toBe("data_plane.shared_memory.name");
  });

  it("does not write into a hard link to another program's shared memory (nlink must be 1, issue #18)", async () => {
    // Another program's file in /dev/shm, same user; the caller names an /opal-* link to it.
    const victim = `${SHARED_MEMORY_DIRECTORY}/other-program-${process.pid}`;
    const fd = openSync(victim, "w+", 0o600);
    ftruncateSync(fd, 1 << 20);
    closeSync(fd);
    created.push(victim);
    const link = `${SHARED_MEMORY_DIRECTORY}/opal-server-test-${process.pid}-hardlink`;
    linkSync(victim, link);
    created.push(link);
    const { messages, error } = await rawPrefill(server.address, {
      name: `/opal-server-test-${process.pid}-hardlink`,
      lengthBytes: 1 << 20,
    });
    expect(messages).toEqual([]);
    expect(violation(error)).toEqual({
      code: Code.INVALID_ARGUMENT,
      field: "data_plane.shared_memory.name",
    });
    expect(error?.details).toMatch(/has 2 links, expected 1/);
    expect(readFileSync(victim).every((byte) => byte === 0)).toBe(true);
  });

  it("rejects a region smaller than its offer, and an offer smaller than the cache (length_bytes)", async () => {
    const small = region(1000);
    const claimed = await rawPrefill(server.address, { name: small.name, lengthBytes: 1 << 20 });
    expect(violation(claimed.error)).toEqual({
      code: Code.INVALID_ARGUMENT,
      field: "data_plane.shared_memory.length_bytes",
    });
    const honest = await rawPrefill(server.address, { name: small.name, lengthBytes: 1000 });
    expect(honest.messages.some((m) => m.accepted || m.chunk)).toBe(false);
    expect(violation(honest.error)).toEqual({
      code: Code.INVALID_ARGUMENT,
      field: "data_plane.shared_memory.length_bytes",
    });
  });

  it("does not open anything but a regular file", async () => {
    const fifo = `${SHARED_MEMORY_DIRECTORY}/opal-server-test-${process.pid}-fifo`;
    execFileSync("mkfifo", [fifo]);
    created.push(fifo);
    const { error } = await rawPrefill(server.address, {
      name: fifo.slice(SHARED_MEMORY_DIRECTORY.length),
      lengthBytes: 1 << 20,
    });
    expect(violation(error)).toEqual({
      code: Code.INVALID_ARGUMENT,
      field: "data_plane.shared_memory.name",
    });
  });

  it("reports the request's own errors first (PF-1: data_plane comes late in stage 4)", async () => {
    const missing = { name: "/opal-server-test-missing", lengthBytes: 1 << 20 };
    const unknownModel = await rawPrefill(server.address, missing, { modelId: "no-such-model" });
    expect(fromGrpcStatus(unknownModel.error!).reason).toBe("MODEL_NOT_LOADED");
    const empty = await rawPrefill(server.address, missing, {
      promptTokenIds: new Uint32Array(0),
    });
    expect(fromGrpcStatus(empty.error!).reason).toBe("PROMPT_EMPTY");
  });

  it("a retry whose region is refused leaves the running call alone (PF-7)", async () => {
    const stalled = await createDeviceServer(
      createMockDevice({ models: ["opal-tiny"], faults: { stallAfterChunks: 1, stallMs: 500 } }),
      { sharedMemory: true },
    );
    try {
      const { name } = region(1 << 20);
      const requestId = `server-test-${process.pid}-supersede`;
      const original = rawPrefill(stalled.address, { name, lengthBytes: 1 << 20 }, { requestId });
      await new Promise((resolve) => setTimeout(resolve, 150));
      const retry = await rawPrefill(
        stalled.address,
        { name: "/opal-server-test-missing", lengthBytes: 1 << 20 },
        { requestId },
      );
      expect(violation(retry.error).field).toBe("data_plane.shared_memory.name");
      const first = await original;
      expect(first.error).toBeUndefined();
      expect(first.messages.at(-1)?.completed).toBeTruthy();
    } finally {
      await stalled.shutdown({ graceMs: 0 });
    }
  });

  it("rejects a region together with a push target", async () => {
    const { name } = region(1 << 20);
    const { error } = await rawPrefill(
      server.address,
      { name, lengthBytes: 1 << 20 },
      { pushTarget: { address: "127.0.0.1:9", transferId: "t-1" } },
    );
    expect(violation(error)).toEqual({ code: Code.INVALID_ARGUMENT, field: "data_plane" });
  });
});
