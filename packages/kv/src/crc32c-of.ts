import { createRequire } from "node:module";
import { crc32c as portableCrc32c } from "@node-rs/crc32";

type Crc32c = (bytes: Uint8Array, crc?: number) => number;

/** This package's addon (`native/crc32c.c`), when built and usable here. */
function loadNative(): Crc32c | undefined {
  if (process.env.OPAL_CRC32C === "@node-rs/crc32") return undefined;
  try {
    // `src/` and `dist/` are both one level below the package root, next to `native/`. (tsup's
    // shims give the CommonJS build an `import.meta.url`.)
    const load = createRequire(import.meta.url);
    return (load("../native/build/crc32c.node") as { crc32c?: Crc32c }).crc32c;
  } catch {
    return undefined;
  }
}

const native = loadNative();
const implementation: Crc32c = native ?? portableCrc32c;

/**
 * The CRC32C implementation in use: `"native"`, this package's addon (`native/crc32c.c`, three
 * interleaved SSE4.2 chains, about 25 GB/s), built by `npm run build` where a C compiler and the
 * Node headers exist; otherwise `"@node-rs/crc32"` (one chain, about 6 GB/s). Both give the same
 * results. `OPAL_CRC32C=@node-rs/crc32` forces the second.
 */
export const CRC32C_BACKEND: "native" | "@node-rs/crc32" = native ? "native" : "@node-rs/crc32";

/** CRC32C (Castagnoli) of `bytes`, uint32; `crc` continues a previous result (default 0). */
export function crc32cOf(bytes: Uint8Array, crc = 0): number {
  return implementation(bytes, crc) >>> 0;
}
