import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, Reason } from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import { decodeOkvBytes, encodeOkvBytes } from "@opal/kv";
import { expectOpalError } from "@opal/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mhaDescriptor, mlaDescriptor, randomCache, sameCache } from "../../../kv/test/fixtures";
import { createOkvFileSink } from "./okv-file-sink";

const stats = {} as PrefillStats;
let dir = "";
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "opal-okv-sink-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("createOkvFileSink", () => {
  for (const cache of [
    randomCache(mhaDescriptor({ dtype: "fp8_e4m3fn", scaleScheme: "per_token", layout: "hnd" })),
    randomCache(mlaDescriptor({ dtype: "bf16" })),
  ]) {
    it(`streams an .okv file that decodes to the same cache (${cache.descriptor.attention.kind}), visible only after commit`, async () => {
      const path = join(dir, "cache.okv");
      const sink = createOkvFileSink({ path, maxFrameBytes: 256 });
      await sink.open(cache.descriptor);
      let previous = 0;
      for (let layer = 0; layer < cache.descriptor.numLayers; layer++) {
        await sink.writeLayer(cache.layer(layer));
        // Streaming: the layer's frames are on disk (under the partial name) when writeLayer resolves.
        const [partial] = await readdir(dir);
        expect(partial).toMatch(/^cache\.okv\.partial-[0-9a-f]{12}$/);
        const size = (await stat(join(dir, partial as string))).size;
        expect(size).toBeGreaterThan(previous);
        previous = size;
      }
      await expect(stat(path)).rejects.toThrow();
      const receipt = await sink.commit(stats);
      expect(await readdir(dir)).toEqual(["cache.okv"]);
      const bytes = new Uint8Array(await readFile(path));
      expect(receipt).toEqual({ path, byteLength: bytes.byteLength });
      expect(sameCache(decodeOkvBytes(bytes), cache)).toBe(true);
      // Same bytes as the one-shot encoder with the same frame size.
      expect(Buffer.compare(bytes, encodeOkvBytes(cache, { maxFrameBytes: 256 }))).toBe(0);
    });
  }

  it("abort deletes the partial file and never creates or touches `path`", async () => {
    const cache = randomCache(mhaDescriptor());
    const path = join(dir, "cache.okv");
    const sink = createOkvFileSink({ path });
    await sink.open(cache.descriptor);
    await sink.writeLayer(cache.layer(0));
    await sink.writeLayer(cache.layer(1));
    await sink.abort(new Error("stream failed"));
    expect(await readdir(dir)).toEqual([]);
    await expectOpalError(Promise.resolve(sink.commit(stats)), Code.CANCELLED);
    expect(await readdir(dir)).toEqual([]);

    // An existing file at `path` survives an aborted sink unchanged (it may be replaced only with replace).
    await writeFile(path, "previous");
    const again = createOkvFileSink({ path, replace: true });
    await again.open(cache.descriptor);
    await again.writeLayer(cache.layer(0));
    await again.abort(new Error("stop"));
    expect(await readdir(dir)).toEqual(["cache.okv"]);
    expect(await readFile(path, "utf8")).toBe("previous");
  });

  it("rejects bad options with INVALID_ARGUMENT naming expected vs actual", () => {
    try {
      createOkvFileSink({ path: join(dir, "x.okv"), maxFrameBytes: 0 });
      expect.unreachable();
    } catch (error) {
      expect(error).toMatchObject({
        code: Code.INVALID_ARGUMENT,
        reason: Reason.INVALID_FIELD,
        message: "[invalid_argument] maxFrameBytes: expected an integer from 1 to 67108864, got 0",
      });
    }
    expect(() => createOkvFileSink({ path: "" })).toThrow(
      '[invalid_argument] path: expected a non-empty file path, got ""',
    );
  });

  it("a missing folder, or a file where the folder should be, fails at open with FAILED_PRECONDITION naming the folder, leaving nothing", async () => {
    const cache = randomCache(mhaDescriptor());
    const missing = join(dir, "missing");
    const sink = createOkvFileSink({ path: join(missing, "cache.okv") });
    const error = await expectOpalError(
      Promise.resolve(sink.open(cache.descriptor)),
      Code.FAILED_PRECONDITION,
    );
    expect(error.message).toBe(
      `[failed_precondition] cannot write ${join(missing, "cache.okv")}: its directory ${missing} does not exist (expected an existing directory; create it first)`,
    );
    expect(await readdir(dir)).toEqual([]);

    const file = join(dir, "file");
    await writeFile(file, "not a folder");
    const under = createOkvFileSink({ path: join(file, "cache.okv") });
    const notFolder = await expectOpalError(
      Promise.resolve(under.open(cache.descriptor)),
      Code.FAILED_PRECONDITION,
    );
    expect(notFolder.message).toContain(`its directory ${file} is not a directory`);
    expect(await readdir(dir)).toEqual(["file"]);
  });
});
