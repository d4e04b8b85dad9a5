import { closeSync, ftruncateSync, openSync, readSync, unlinkSync } from "node:fs";
import { Code } from "@opal/core";
import { cacheByteLength, toHex } from "@opal/kv";
import { SHARED_MEMORY_DIRECTORY } from "@opal/protocol";
import {
  assertConformance,
  type ConformanceContext,
  type ConformanceTest,
  optional,
} from "../conformance-test";
import { expectPrefillFailure } from "../expect-prefill-failure";
import { assertBaseline, assertCompleted, baselinePrefill } from "./prefill-checks";

const NAME_FIELD = "data_plane.shared_memory.name";

/** The shared-memory data plane (PF-41..43), for devices that declare it. */
export function toDataPlaneSuite(): ConformanceTest[] {
  return [
    {
      id: "data-plane.shared-memory",
      title:
        "A prefill offered a region writes the cache there: data_ref at canonical offsets, empty data, CRC32C and digest over the region's bytes",
      tag: optional("shared-memory"),
      spec: ["PF-42", "PF-43", "PF-25"],
      needs: ["model"],
      run: runDataPlaneSharedMemory,
    },
    {
      id: "data-plane.region-too-small",
      title: "A region smaller than the cache fails INVALID_ARGUMENT on length_bytes",
      tag: optional("shared-memory"),
      spec: ["PF-43"],
      needs: ["model"],
      run: runDataPlaneRegionTooSmall,
    },
  ];
}

/** Runs `body` with a fresh region of `bytes` bytes in /dev/shm, removed afterwards. */
async function withRegion(
  ctx: ConformanceContext,
  bytes: number,
  body: (region: {
    name: string;
    read(offset: number, length: number): Uint8Array;
  }) => Promise<void>,
): Promise<void> {
  const base = `opal-conformance-${process.pid}-${ctx.requestId("region")}`.replace(
    /[^\w.-]/g,
    "-",
  );
  const path = `${SHARED_MEMORY_DIRECTORY}/${base}`;
  let fd: number;
  try {
    fd = openSync(path, "wx+", 0o600);
  } catch (error) {
    ctx.skip(`cannot create a region in ${SHARED_MEMORY_DIRECTORY}: ${(error as Error).message}`);
  }
  try {
    ftruncateSync(fd, bytes);
    await body({
      name: `/${base}`,
      read(offset, length) {
        const out = new Uint8Array(length);
        readSync(fd, out, 0, length, offset);
        return out;
      },
    });
  } finally {
    closeSync(fd);
    unlinkSync(path);
  }
}

/**
 * `data-plane.shared-memory`: A prefill offered a region writes the cache there: data_ref at
 * canonical offsets, empty data, CRC32C and digest over the region's bytes.
 */
async function runDataPlaneSharedMemory(ctx: ConformanceContext): Promise<void> {
  const inline = assertBaseline(ctx, (await baselinePrefill(ctx)).collected);
  const total = cacheByteLength(inline.descriptor);
  // Not at offset 0, so a device that ignores region.offset_bytes is caught.
  const offsetBytes = 4096;
  await withRegion(ctx, offsetBytes + total, async (region) => {
    const collected = await ctx.prefill(
      ctx.prefillRequest({
        maxChunkBytes: Math.min(1000, ctx.capabilities.maxChunkBytes ?? 1000),
        dataPlane: {
          sharedMemory: { name: region.name, offsetBytes, lengthBytes: total },
        },
      }),
      { region: { offsetBytes, read: region.read } },
    );
    if (collected.error?.fieldViolations.some((v) => v.field === NAME_FIELD)) {
      ctx.skip(`the device cannot open ${region.name}: it does not share this host's /dev/shm`);
    }
    const done = assertCompleted(collected, "the prefill through shared memory");
    assertConformance(
      done.digestHex === inline.digestHex,
      `PF-43: the region holds a cache with digest ${done.digestHex}, the inline stream carried ${inline.digestHex}`,
    );
    const digest = toHex(done.completed.kvDigest ?? new Uint8Array());
    assertConformance(
      digest === done.digestHex,
      `PF-25: kv_digest ${digest}, XXH3-128 of the region's bytes ${done.digestHex}`,
    );
    ctx.note(`${done.chunkCount} chunks, ${done.receivedBytes} bytes through ${region.name}`);
  });
}

/**
 * `data-plane.region-too-small`: A region smaller than the cache fails INVALID_ARGUMENT on
 * length_bytes.
 */
async function runDataPlaneRegionTooSmall(ctx: ConformanceContext): Promise<void> {
  await withRegion(ctx, 64, async (region) => {
    await expectPrefillFailure(
      ctx,
      ctx.prefillRequest({
        dataPlane: { sharedMemory: { name: region.name, lengthBytes: 64 } },
      }),
      {
        code: Code.INVALID_ARGUMENT,
        reasons: ["INVALID_FIELD"],
        field: "data_plane.shared_memory.length_bytes",
        spec: "PF-43",
      },
      "a 64-byte region",
    );
  });
}
