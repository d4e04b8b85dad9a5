import { describe, expect, it } from "vitest";
import { allocateKvMemory, KV_MEMORY_BACKEND } from "./allocate-kv-memory";

const MIB = 1024 * 1024;

describe("allocateKvMemory", () => {
  it("uses huge pages on Linux where the addon is built (CI builds it)", () => {
    if (process.env.CI && process.platform === "linux")
      expect(KV_MEMORY_BACKEND).toBe("huge-pages");
    expect(["huge-pages", "ordinary"]).toContain(KV_MEMORY_BACKEND);
  });

  it("returns distinct writable buffers of exactly the size asked, zeroed when large", () => {
    for (const bytes of [1, 4096, 8 * MIB - 1, 8 * MIB, 33 * MIB + 5]) {
      const a = allocateKvMemory(bytes);
      const b = allocateKvMemory(bytes);
      expect(a.byteLength).toBe(bytes);
      expect(a.buffer).not.toBe(b.buffer);
      if (KV_MEMORY_BACKEND === "huge-pages" && bytes >= 8 * MIB) {
        expect(a.byteOffset).toBe(0);
        expect(a.buffer.byteLength).toBe(bytes);
        expect(a.every((x) => x === 0)).toBe(true);
      }
      a.fill(0xab);
      b.fill(0xcd);
      expect(a[0]).toBe(0xab);
      expect(a[bytes - 1]).toBe(0xab);
      expect(b[bytes - 1]).toBe(0xcd);
    }
  });

  it("frees large buffers once they are collected", async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    const rssMiB = () => process.memoryUsage().rss / MIB;
    const before = rssMiB();
    // 2 GiB in all, 64 MiB at a time, each touched: the process would hold it all if none were freed.
    for (let i = 0; i < 32; i++) {
      allocateKvMemory(64 * MIB).fill(i);
      if (gc) gc();
      else await new Promise((resolve) => setImmediate(resolve));
    }
    expect(rssMiB() - before).toBeLessThan(1024);
  });

  it("rejects sizes that are not positive integers", () => {
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 60]) {
      expect(() => allocateKvMemory(bad)).toThrow(RangeError);
    }
  });
});
