import {
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@opal/core";
import type { PrefillStats } from "@opal/driver";
import { decodeOkvBytes, decodeSafetensorsKv } from "@opal/kv";
import { expectOpalError } from "@opal/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mhaDescriptor, randomCache, sameCache } from "../../../kv/test/fixtures";
import { createAtomicFile, writeAtomicFile } from "./create-atomic-file";
import type { KvSink } from "./kv-sink";
import { createOkvFileSink } from "./okv-file-sink";
import { writeAtomicFolder } from "./publish-output";
import { createSafetensorsFileSink } from "./safetensors-file-sink";

// Issue #18 item 6: OPAL never deletes or writes through what it did not create.
const stats = {} as PrefillStats;
const cache = randomCache(mhaDescriptor({ dtype: "f16" }));
let dir = "";
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "opal-publish-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** `expectOpalError`, and the message matches `message`. */
async function expectRefused(promise: Promise<unknown>, code: Code, message?: RegExp) {
  const error = await expectOpalError(promise, code);
  if (message) expect(error.message).toMatch(message);
}

async function writeAll(sink: KvSink<unknown>): Promise<void> {
  await sink.open(cache.descriptor);
  for (let layer = 0; layer < cache.descriptor.numLayers; layer++)
    await sink.writeLayer(cache.layer(layer));
  await sink.commit(stats);
}

const sinks = {
  okv: (path: string, replace?: boolean) => createOkvFileSink({ path, replace }),
  safetensors: (path: string, replace?: boolean) => createSafetensorsFileSink({ path, replace }),
};

describe("file sinks refuse what OPAL did not create", () => {
  for (const [name, create] of Object.entries(sinks)) {
    it(`${name}: an existing non-empty file is refused at open and kept; replace swaps it atomically`, async () => {
      const path = join(dir, "out");
      await writeFile(path, "operator data");
      await expectRefused(writeAll(create(path)), Code.ALREADY_EXISTS, /already exists/);
      expect(await readFile(path, "utf8")).toBe("operator data");
      expect(await readdir(dir)).toEqual(["out"]);
      await writeAll(create(path, true));
      const bytes = new Uint8Array(await readFile(path));
      const back = name === "okv" ? decodeOkvBytes(bytes) : decodeSafetensorsKv(bytes);
      expect(sameCache(back, cache)).toBe(true);
    });

    it(`${name}: a file created between open and commit is refused atomically at commit`, async () => {
      const path = join(dir, "out");
      const sink = create(path);
      await sink.open(cache.descriptor);
      for (let layer = 0; layer < cache.descriptor.numLayers; layer++)
        await sink.writeLayer(cache.layer(layer));
      await writeFile(path, "written meanwhile");
      await expectOpalError(Promise.resolve(sink.commit(stats)), Code.ALREADY_EXISTS);
      expect(await readFile(path, "utf8")).toBe("written meanwhile");
      expect(await readdir(dir)).toEqual(["out"]); // the temporary file is gone
    });

    it(`${name}: a symbolic link at the path is never written through`, async () => {
      const victim = join(dir, "victim");
      await writeFile(victim, "");
      const path = join(dir, "out");
      await symlink(victim, path);
      await expectOpalError(writeAll(create(path)), Code.ALREADY_EXISTS);
      expect(await readlink(path)).toBe(victim);
      // With replace the link itself is replaced by the new file; its target is untouched.
      await writeAll(create(path, true));
      expect((await lstat(path)).isFile()).toBe(true);
      expect(await readFile(victim, "utf8")).toBe("");
    });
  }

  it("an empty file (e.g. from mktemp) is free and replaced", async () => {
    const path = join(dir, "empty");
    await writeFile(path, "");
    await writeAll(createOkvFileSink({ path }));
    expect(sameCache(decodeOkvBytes(new Uint8Array(await readFile(path))), cache)).toBe(true);
  });

  it("temporary files have random names and are created exclusively", async () => {
    const path = join(dir, "out");
    const a = await createAtomicFile(path);
    const b = await createAtomicFile(path);
    expect(a.partialPath).toMatch(/^.*\/out\.partial-[0-9a-f]{12}$/);
    expect(b.partialPath).not.toBe(a.partialPath);
    await a.discard();
    await b.discard();
    expect(await readdir(dir)).toEqual([]);
    expect(await writeAtomicFile(path, Uint8Array.of(1, 2, 3))).toBe(3);
    await expectOpalError(writeAtomicFile(path, Uint8Array.of(4)), Code.ALREADY_EXISTS);
    expect([...(await readFile(path))]).toEqual([1, 2, 3]);
  });
});

describe("writeAtomicFolder", () => {
  it("refuses an existing non-empty folder, leaving it whole; replace swaps it", async () => {
    const folder = join(dir, "lmcache");
    await mkdir(join(folder, "sub"), { recursive: true });
    await writeFile(join(folder, "sub", "precious"), "keep me");
    await expectRefused(
      writeAtomicFolder(folder, [["manifest.json", "{}"]]),
      Code.ALREADY_EXISTS,
      /already exists and is not empty/,
    );
    expect(await readFile(join(folder, "sub", "precious"), "utf8")).toBe("keep me");
    expect(await readdir(dir)).toEqual(["lmcache"]);
    await writeAtomicFolder(folder, [["manifest.json", "{}"]], { replace: true });
    expect(await readdir(folder)).toEqual(["manifest.json"]);
    expect(await readdir(dir)).toEqual(["lmcache"]);
  });

  it("refuses an existing file or link at the folder's path; an empty folder is free", async () => {
    const file = join(dir, "file");
    await writeFile(file, "x");
    await expectOpalError(writeAtomicFolder(file, [["a", "1"]]), Code.ALREADY_EXISTS);
    expect(await readFile(file, "utf8")).toBe("x");
    const empty = join(dir, "empty");
    await mkdir(empty);
    await writeAtomicFolder(empty, [["a", "1"]]);
    expect(await readFile(join(empty, "a"), "utf8")).toBe("1");
  });

  it("names a missing parent folder", async () => {
    await expectRefused(
      writeAtomicFolder(join(dir, "no", "out"), [["a", "1"]]),
      Code.FAILED_PRECONDITION,
      /does not exist/,
    );
  });
});
