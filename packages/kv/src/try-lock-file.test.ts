import { spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { FILE_LOCKS_AVAILABLE, tryLockFile } from "./try-lock-file";

const dir = mkdtempSync(join(tmpdir(), "opal-lock-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("tryLockFile", () => {
  it("is built wherever flock exists (CI requires it)", () => {
    if (process.env.CI && process.platform === "linux") expect(FILE_LOCKS_AVAILABLE).toBe(true);
    if (!FILE_LOCKS_AVAILABLE) expect(() => tryLockFile(0)).toThrow(/not built/);
  });

  it.skipIf(!FILE_LOCKS_AVAILABLE)(
    "takes an exclusive lock once per file, held until the holder closes it, across processes",
    () => {
      const path = join(dir, "region");
      const owner = openSync(path, "w");
      const other = openSync(path, "r");
      try {
        expect(tryLockFile(owner)).toBe(true);
        expect(tryLockFile(owner)).toBe(true); // already held through this open file
        expect(tryLockFile(other)).toBe(false);
        // Another process sees the lock too (locks live on the inode, not on a PID).
        const addon = fileURLToPath(new URL("../native/build/file-lock.node", import.meta.url));
        const probe = `const {tryLockFile}=require(${JSON.stringify(addon)});const fd=require("fs").openSync(${JSON.stringify(path)},"r");process.stdout.write(String(tryLockFile(fd)))`;
        const run = () => spawnSync(process.execPath, ["-e", probe], { encoding: "utf8" }).stdout;
        expect(run()).toBe("false");
        closeSync(owner);
        expect(run()).toBe("true");
        expect(tryLockFile(other)).toBe(true);
      } finally {
        closeSync(other);
      }
      expect(() => tryLockFile(999_999)).toThrow(/EBADF|Bad file/);
    },
  );
});
