import { randomBytes } from "node:crypto";
import { crc32c as portable } from "@node-rs/crc32";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CRC32C_BACKEND, crc32cOf } from "./crc32c-of";

describe("crc32cOf", () => {
  it("gives the CRC-32C check value and continues a previous result", () => {
    expect(crc32cOf(new TextEncoder().encode("123456789"))).toBe(0xe3069283);
    const data = randomBytes(100_000);
    expect(crc32cOf(data.subarray(40_000), crc32cOf(data.subarray(0, 40_000)))).toBe(
      crc32cOf(data),
    );
  });

  it("equals @node-rs/crc32 for any length, alignment and starting value", () => {
    fc.assert(
      fc.property(
        // Lengths around the 256-byte and 8 KiB blocks the native code interleaves.
        fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 24_000, max: 80_000 })),
        fc.integer({ min: 0, max: 7 }),
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        (length, offset, start) => {
          const bytes = randomBytes(length + offset).subarray(offset);
          expect(crc32cOf(bytes, start)).toBe(portable(bytes, start) >>> 0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("uses the native addon where it can be built (always in CI)", () => {
    // `npm test` builds before it tests; CI machines have a C compiler (.ci/run installs gcc).
    if (process.env.CI) expect(CRC32C_BACKEND).toBe("native");
    else expect(["native", "@node-rs/crc32"]).toContain(CRC32C_BACKEND);
  });
});
