import { describe, expect, it } from "vitest";
import type { PrefillRequest } from "./gen/messages";
import { prefillBodyDigest } from "./prefill-body-digest";

const base: PrefillRequest = {
  requestId: "r-1",
  modelId: "opal-tiny",
  promptTokenIds: Uint32Array.of(1, 2, 3),
  kvFormat: { dtype: "f32", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
};

describe("prefillBodyDigest: the body of PF-5..7, as docs/protocol/prefill.md §3 defines it", () => {
  it("leaves out request_id", () => {
    expect(prefillBodyDigest({ ...base, requestId: "other" })).toBe(prefillBodyDigest(base));
  });

  it("leaves out priority, which orders admission but computes the same result", () => {
    expect(prefillBodyDigest({ ...base, priority: -7 })).toBe(prefillBodyDigest(base));
    expect(prefillBodyDigest({ ...base, priority: 3 })).toBe(prefillBodyDigest(base));
  });

  it("treats a field equal to its zero value as absent (an empty sub-message as none)", () => {
    const zeros: PrefillRequest = {
      ...base,
      cacheSalt: "",
      retentionSeconds: 0,
      maxChunkBytes: 0,
      decoderPrefix: { numTokens: 0, blockHashes: [] },
    };
    expect(prefillBodyDigest(zeros)).toBe(prefillBodyDigest(base));
  });

  it("tells apart bodies that differ in any field, push target included", () => {
    const digests = [
      base,
      { ...base, promptTokenIds: Uint32Array.of(1, 2, 4) },
      { ...base, promptTokenIds: Uint32Array.of(0, 2, 3) },
      { ...base, kvFormat: { ...base.kvFormat, dtype: "bf16" as const } },
      { ...base, retentionSeconds: 5 },
      { ...base, pushTarget: { address: "127.0.0.1:1", transferId: "t" } },
      { ...base, decoderPrefix: { blockHashes: [Uint8Array.of(1)] } },
    ].map(prefillBodyDigest);
    expect(new Set(digests).size).toBe(digests.length);
  });
});
