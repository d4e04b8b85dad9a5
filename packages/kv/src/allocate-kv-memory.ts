import { createRequire } from "node:module";

type AllocateLarge = (bytes: number) => ArrayBuffer;

/** This package's addon (`native/large-memory.c`), when built and usable here. */
function loadNative(): AllocateLarge | undefined {
  if (process.env.OPAL_KV_MEMORY === "ordinary") return undefined;
  try {
    // `src/` and `dist/` are both one level below the package root, next to `native/`.
    const load = createRequire(import.meta.url);
    return (load("../native/build/large-memory.node") as { allocateLarge?: AllocateLarge })
      .allocateLarge;
  } catch {
    return undefined;
  }
}

const native = loadNative();

/** Below this, ordinary buffers: huge pages pay off only for large, freshly filled memory. */
const LARGE_BYTES = 8 * 1024 * 1024;

/**
 * Where {@link allocateKvMemory} gets large buffers: `"huge-pages"`, this package's addon
 * (`native/large-memory.c`: anonymous memory on 2 MiB boundaries with `MADV_HUGEPAGE`, built on
 * Linux by `npm run build`), or `"ordinary"` (`Buffer.allocUnsafeSlow`). `OPAL_KV_MEMORY=ordinary`
 * forces the second.
 */
export const KV_MEMORY_BACKEND: "huge-pages" | "ordinary" = native ? "huge-pages" : "ordinary";

/**
 * A buffer of `bytes` bytes for KV data that is about to be written in full (a cache read from
 * shared memory, say), owned by the caller and freed when it is collected. From 8 MiB, and where
 * {@link KV_MEMORY_BACKEND} is `"huge-pages"`, it is zeroed memory in transparent huge pages:
 * filling fresh memory then costs one page fault per 2 MiB instead of per 4 KiB, which makes
 * filling a large cache about 2.5x faster on Linux. Otherwise its contents are unspecified, as
 * with `Buffer.allocUnsafeSlow`. Throws RangeError for a size that is not a positive integer.
 */
export function allocateKvMemory(bytes: number): Buffer {
  if (!Number.isSafeInteger(bytes) || bytes < 1) {
    throw new RangeError(`allocateKvMemory: expected a positive integer byte count, got ${bytes}`);
  }
  if (native && bytes >= LARGE_BYTES) return Buffer.from(native(bytes));
  return Buffer.allocUnsafeSlow(bytes);
}
