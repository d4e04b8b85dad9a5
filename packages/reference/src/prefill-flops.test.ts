import { describe, expect, it } from "vitest";
import { toPresetConfig } from "./create-preset-weights";
import { prefillFlops } from "./prefill-flops";

describe("prefillFlops", () => {
  it("counts 2 x linear params per token, the LM head once and 4 x ctx x headDim x heads of attention", () => {
    const c = toPresetConfig("opal-tiny");
    // per layer: q 64x64, k,v 64x32, o 64x64, gate/up/down 3 x 64x192 = 49152 params
    const linear = 2 * 3 * 2 * 49152;
    const head = 2 * 64 * 258;
    const attention = 4 * (1 + 2 + 3) * 16 * 4 * 2;
    expect(prefillFlops(c, 3)).toBe(linear + head + attention);
    // Chunked: the sum over chunks (minus the extra LM heads) equals the whole.
    expect(prefillFlops(c, 2) + prefillFlops(c, 1, { pastTokens: 2 }) - head).toBe(
      prefillFlops(c, 3),
    );
  });
});
