import { describe, expect, it } from "vitest";
import { toPresetConfig } from "./create-preset-weights";
import { toRopeInvFreq, toRopeTables } from "./rope";

const llama31 = {
  ...toPresetConfig("opal-small"),
  headDim: 128,
  ropeTheta: 500000,
  ropeScaling: {
    ropeType: "llama3",
    factor: 8,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 8192,
  },
} as const;

describe("toRopeInvFreq", () => {
  it("is 1 / theta^(2k/d) without scaling", () => {
    const config = { ...llama31, ropeScaling: null };
    const inv = toRopeInvFreq(config);
    expect(inv.length).toBe(64);
    expect(inv[0]).toBe(1);
    const expected = 1 / 500000 ** (20 / 128);
    expect(Math.abs(inv[10]! - expected) / expected).toBeLessThan(1e-7); // f32 rounding
  });

  it("applies Llama 3 scaling: high frequencies kept, low ones divided by 8, the band between smoothed", () => {
    const plain = toRopeInvFreq({ ...llama31, ropeScaling: null });
    const scaled = toRopeInvFreq(llama31);
    let kept = 0;
    let divided = 0;
    let smoothed = 0;
    for (let k = 0; k < plain.length; k++) {
      const wavelen = (2 * Math.PI) / plain[k]!;
      if (wavelen < 8192 / 4) {
        expect(scaled[k]).toBe(plain[k]);
        kept++;
      } else if (wavelen > 8192) {
        expect(scaled[k]).toBeCloseTo(plain[k]! / 8, 12);
        divided++;
      } else {
        expect(scaled[k]!).toBeLessThan(plain[k]!);
        expect(scaled[k]!).toBeGreaterThan(plain[k]! / 8);
        smoothed++;
      }
    }
    // Llama 3.1 (head dim 128, theta 500000): the three bands are all populated.
    expect([kept, smoothed, divided].every((count) => count > 0)).toBe(true);
    expect(kept + smoothed + divided).toBe(64);
  });
});

describe("toRopeTables", () => {
  it("holds cos and sin of position x frequency, starting at the given position", () => {
    const inv = Float32Array.of(1, 0.5);
    const { cos, sin } = toRopeTables(inv, 3, 2);
    expect(Array.from(cos)).toEqual([3, 1.5, 4, 2].map((a) => Math.fround(Math.cos(a))));
    expect(Array.from(sin)).toEqual([3, 1.5, 4, 2].map((a) => Math.fround(Math.sin(a))));
  });
});
