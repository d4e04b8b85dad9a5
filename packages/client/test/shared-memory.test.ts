import { type ChildProcess, spawnSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  linkSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  statSync,
  watch,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Code } from "@opal/core";
import type { PrefillRequest } from "@opal/driver";
import { digestKvCache, FILE_LOCKS_AVAILABLE, partsOf, toHex, tryLockFile } from "@opal/kv";
import { type MockServer, serveMockDevice } from "@opal/mock";
import { expectOpalError, startListeningProcess } from "@opal/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDeviceClient, type DeviceClient } from "../src/device-client/create-device-client";
import { startPrefill } from "../src/prefill/start-prefill";
import { createSharedMemoryRegions } from "../src/shared-memory/shared-memory-regions";

let n = 0;
// Llama-3-8B's shape, 64 tokens, bf16: 32 layers of K and V, 128 KiB each (8 MiB).
const request = (patch: Partial<PrefillRequest> = {}): PrefillRequest => ({
  requestId: `shm-${process.pid}-${++n}`,
  modelId: "llama-3-8b",
  promptTokenIds: Uint32Array.from({ length: 64 }, (_, i) => (i * 7 + n) % 1000),
  kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  maxChunkBytes: 100_000,
  ...patch,
});

/** This process's region files in /dev/shm. */
const regionFiles = () =>
  readdirSync("/dev/shm").filter((name) => name.startsWith(`opal-${process.pid}-`));

/** Runs `body` and returns the names of the region files this process created meanwhile. */
async function regionsCreatedDuring(body: () => Promise<unknown>): Promise<string[]> {
  const created = new Set<string>();
  const watcher = watch("/dev/shm", (_event, name) => {
    if (name?.startsWith(`opal-${process.pid}-`)) created.add(name);
  });
  try {
    await body();
    await new Promise((resolve) => setTimeout(resolve, 50));
  } finally {
    watcher.close();
  }
  return [...created];
}

describe.skipIf(process.platform !== "linux")("shared-memory data plane in the SDK", () => {
  let shm: MockServer;
  let inline: MockServer;
  let faulty: MockServer;
  beforeAll(async () => {
    shm = await serveMockDevice({ models: ["llama-3-8b"] }, { port: 0, sharedMemory: true });
    inline = await serveMockDevice({ models: ["llama-3-8b"] }, { port: 0 });
    faulty = await serveMockDevice(
      { models: ["llama-3-8b"], faults: { corruptChunk: 3 } },
      { port: 0, sharedMemory: true },
    );
  });
  afterAll(async () => {
    await Promise.all([shm.close(), inline.close(), faulty.close()]);
  });

  /** Runs `body` with a client of `server`, closing it after. */
  async function withClient<T>(
    server: MockServer,
    options: Parameters<typeof createDeviceClient>[1],
    body: (client: DeviceClient) => Promise<T>,
  ): Promise<T> {
    const client = createDeviceClient(server.address, options);
    try {
      return await body(client);
    } finally {
      await client.close();
    }
  }

  it("carries the cache through a region (auto on loopback): the same verified bytes as inline", async () => {
    const req = request();
    const viaInline = await withClient(inline, {}, (c) => startPrefill(c, req).result);
    await withClient(shm, {}, async (client) => {
      const outcome = await startPrefill(client, req).result;
      expect(toHex(digestKvCache(outcome.receipt))).toBe(toHex(digestKvCache(viaInline.receipt)));
      // The region holds the cache in canonical order: the device wrote it there, not in the stream.
      const [file] = regionFiles();
      expect(file).toBeDefined();
      const first = outcome.receipt.part(0, partsOf(outcome.descriptor)[0]!);
      const head = Buffer.alloc(first.byteLength);
      const fd = openSync(`/dev/shm/${file}`, "r");
      readSync(fd, head, 0, head.byteLength, 0);
      closeSync(fd);
      expect(head).toEqual(Buffer.from(first));
    });
    expect(regionFiles()).toEqual([]);
  });

  it("serves a device on a unix socket through a region (auto: a unix socket is this host)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "opal-unix-"));
    const address = `unix:${join(dir, "device.sock")}`;
    const server = await serveMockDevice(
      { models: ["llama-3-8b"] },
      { host: address, sharedMemory: true },
    );
    try {
      expect(server.address).toBe(address);
      const req = request();
      const viaInline = await withClient(inline, {}, (c) => startPrefill(c, req).result);
      const created = await regionsCreatedDuring(() =>
        withClient(server, {}, async (client) => {
          const outcome = await startPrefill(client, req).result;
          expect(toHex(digestKvCache(outcome.receipt))).toBe(
            toHex(digestKvCache(viaInline.receipt)),
          );
        }),
      );
      expect(created).toHaveLength(1);
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reuses one region for consecutive prefills and removes it on close", async () => {
    await withClient(shm, {}, async (client) => {
      for (let i = 0; i < 3; i++) await startPrefill(client, request()).result;
      expect(regionFiles()).toHaveLength(1);
    });
    expect(regionFiles()).toEqual([]);
  });

  it("gives concurrent prefills a region each, and keeps at most two afterwards", async () => {
    await withClient(shm, {}, async (client) => {
      const created = await regionsCreatedDuring(async () => {
        const outcomes = await Promise.all(
          [0, 1, 2].map(() => startPrefill(client, request()).result),
        );
        for (const outcome of outcomes) expect(outcome.stats.kvTotalBytes).toBe(8 * 1024 * 1024);
      });
      expect(created).toHaveLength(3);
      expect(regionFiles()).toHaveLength(2);
    });
  });

  it("detects a corrupt chunk in the region by its CRC, resumes inline, and drops the region", async () => {
    const req = request({ retentionSeconds: 30 });
    const expected = await withClient(inline, {}, (c) => startPrefill(c, req).result);
    await withClient(faulty, {}, async (client) => {
      let outcome = expected;
      const created = await regionsCreatedDuring(async () => {
        outcome = await startPrefill(client, req).result;
      });
      expect(created).toHaveLength(1);
      expect(outcome.transfer.resumes).toBe(1);
      expect(toHex(digestKvCache(outcome.receipt))).toBe(toHex(digestKvCache(expected.receipt)));
      // The broken stream's region is not reused: the device might still have been writing.
      expect(regionFiles()).toEqual([]);
    });
  });

  it("sends a cache above sharedMemoryMaxBytes inline, and one within it through a region", async () => {
    const tokens = (n: number) => Uint32Array.from({ length: n }, (_, i) => i + 1);
    await withClient(shm, { sharedMemoryMaxBytes: 8 * 1024 * 1024 }, async (client) => {
      // 65 tokens: 65 · 8 heads · 128 · 2 bytes · K,V · 32 layers, just over 8 MiB.
      const over = await regionsCreatedDuring(async () => {
        const outcome = await startPrefill(client, request({ promptTokenIds: tokens(65) })).result;
        expect(outcome.stats.kvTotalBytes).toBe(65 * 8 * 128 * 2 * 2 * 32);
      });
      expect(over).toEqual([]);
      const within = await regionsCreatedDuring(
        () => startPrefill(client, request({ promptTokenIds: tokens(64) })).result,
      );
      expect(within).toHaveLength(1);
    });
  });

  it("reaches a device named localhost through shared memory too", async () => {
    const port = shm.address.split(":").at(-1);
    const client = createDeviceClient(`localhost:${port}`);
    try {
      const created = await regionsCreatedDuring(() => startPrefill(client, request()).result);
      expect(created).toHaveLength(1);
    } finally {
      await client.close();
    }
  });

  it('fails clearly with dataPlane "shared-memory" when the device does not offer it', async () => {
    await withClient(inline, { dataPlane: "shared-memory" }, async (client) => {
      await expectOpalError(
        startPrefill(client, request()).result,
        Code.UNIMPLEMENTED,
        "UNSUPPORTED_FEATURE",
      );
    });
    expect(regionFiles()).toEqual([]);
  });

  it("removes the regions that processes killed outright left behind", async () => {
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!;
    const left = `/dev/shm/opal-${dead}-${"ab".repeat(12)}`;
    const other = `/dev/shm/opal-${dead}-not-a-region`;
    for (const path of [left, other]) closeSync(openSync(path, "w", 0o600));
    try {
      await withClient(shm, {}, (client) => startPrefill(client, request()).result);
      expect(existsSync(left)).toBe(false);
      expect(existsSync(other)).toBe(true); // not a name the SDK makes: left alone
    } finally {
      for (const path of [left, other]) rmSync(path, { force: true });
    }
  });

  // The lock addon is built by `npm run build` (@opal/kv); CI always has it.
  it.skipIf(!FILE_LOCKS_AVAILABLE && !process.env.CI)(
    "keeps a live region whose owner's PID it cannot see (another PID namespace): liveness is the owner's lock (issue #18)",
    async () => {
      // A sidecar's region: its PID means nothing here (no such process in this namespace), but its
      // owner holds the region's lock. The lock is per open file, so holding it here acts like another process.
      const unseen = spawnSync(process.execPath, ["-e", ""]).pid!;
      const live = `/dev/shm/opal-${unseen}-${"cd".repeat(12)}`;
      const owner = openSync(live, "w", 0o600);
      let held = true;
      try {
        expect(tryLockFile(owner)).toBe(true);
        await withClient(shm, {}, (client) => startPrefill(client, request()).result);
        expect(existsSync(live)).toBe(true);
        closeSync(owner); // the owner ends: the kernel drops its lock
        held = false;
        await withClient(shm, {}, (client) => startPrefill(client, request()).result);
        expect(existsSync(live)).toBe(false);
      } finally {
        if (held) closeSync(owner);
        rmSync(live, { force: true });
      }
    },
  );

  it("does not reuse a region someone hard-linked elsewhere (nlink must stay 1, issue #18)", () => {
    const regions = createSharedMemoryRegions();
    const link = `/dev/shm/linked-${process.pid}`;
    try {
      const first = regions.acquire(4096)!;
      regions.release(first, true);
      linkSync(`/dev/shm${first.name}`, link);
      const second = regions.acquire(4096)!;
      expect(second.name).not.toBe(first.name);
      expect(existsSync(`/dev/shm${first.name}`)).toBe(false); // our name removed, theirs kept
      expect(existsSync(link)).toBe(true);
      regions.release(second, false);
    } finally {
      regions.close();
      rmSync(link, { force: true });
    }
  });

  it('stays inline with dataPlane "inline"', async () => {
    await withClient(shm, { dataPlane: "inline" }, async (client) => {
      await startPrefill(client, request()).result;
      expect(regionFiles()).toEqual([]);
    });
  });
});

const builtMock = fileURLToPath(new URL("../../mock/dist/opal-mock.js", import.meta.url));

/** Whether any user can read `file`: every directory above it searchable, the file readable. */
function readableByAnyone(file: string): boolean {
  if ((statSync(file).mode & 0o004) === 0) return false;
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) return false;
    if (dir === dirname(dir)) return true;
  }
}

// Root can start the device as another user, which cannot open this process's 0600 regions:
// what a device in another container or mount namespace sees. (Not where the checkout is private,
// e.g. under /root: that user could not load the mock.)
const canRunAsNobody =
  process.platform === "linux" &&
  process.getuid?.() === 0 &&
  existsSync(builtMock) &&
  readableByAnyone(builtMock);

describe.skipIf(!canRunAsNobody)("a same-host device that cannot open the client's regions", () => {
  let child: ChildProcess;
  let address: string;
  beforeAll(async () => {
    ({ child, address } = await startListeningProcess(
      [
        builtMock,
        "--port",
        "0",
        "--profile",
        "instant",
        "--model",
        "llama-3-8b",
        "--shared-memory",
      ],
      { uid: 65534, gid: 65534 },
    ));
  });
  afterAll(() => {
    child.kill("SIGTERM");
  });

  it("auto: the refused call goes inline, and so does every later one (no region offered again)", async () => {
    const client = createDeviceClient(address);
    try {
      const first = await startPrefill(client, request()).result;
      expect(first.stats.kvTotalBytes).toBe(8 * 1024 * 1024);
      expect(regionFiles()).toEqual([]);
      const created: string[] = [];
      const watcher = watch("/dev/shm", (_event, name) => {
        if (name?.startsWith(`opal-${process.pid}-`)) created.push(name);
      });
      try {
        await startPrefill(client, request()).result;
        await new Promise((resolve) => setTimeout(resolve, 50));
      } finally {
        watcher.close();
      }
      expect(created).toEqual([]);
    } finally {
      await client.close();
    }
  });

  it('"shared-memory": fails INVALID_ARGUMENT naming the region', async () => {
    const client = createDeviceClient(address, { dataPlane: "shared-memory" });
    try {
      const error = await expectOpalError(
        startPrefill(client, request()).result,
        Code.INVALID_ARGUMENT,
        "INVALID_FIELD",
      );
      expect(error.fieldViolations[0]?.field).toBe("data_plane.shared_memory.name");
      expect(regionFiles()).toEqual([]);
    } finally {
      await client.close();
    }
  });
});
