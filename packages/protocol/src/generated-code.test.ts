import { describe, expect, it } from "vitest";
import { google, opal } from "./gen/pb.js";

describe("generated protobuf code", () => {
  it("decodes every 64-bit field to a number, never a Long object", () => {
    const v1 = opal.device.v1;
    const big = 2 ** 40 + 3;
    const chunk = v1.KvChunk.decode(v1.KvChunk.encode({ offsetBytes: big }).finish());
    expect(chunk.offsetBytes).toBe(big);
    const descriptor = v1.KvDescriptor.decode(
      v1.KvDescriptor.encode({ tokenStart: 5, tokenCount: big, totalBytes: big }).finish(),
    );
    expect([typeof descriptor.tokenStart, descriptor.tokenCount, descriptor.totalBytes]).toEqual([
      "number",
      big,
      big,
    ]);
    const duration = google.protobuf.Duration.decode(
      google.protobuf.Duration.encode({ seconds: 7 }).finish(),
    );
    expect(duration.seconds).toBe(7);
    // Defaults are numbers too.
    expect(new v1.PrefillAccepted().leaseExpiryUnixMs).toBe(0);
  });
});
