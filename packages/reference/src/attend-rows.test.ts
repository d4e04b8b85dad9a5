import { describe, expect, it } from "vitest";
import { attendRows } from "./attend-rows";
import { createAttentionScratch } from "./attention-scratch";
import { expNonPositive } from "./exp-non-positive";
import { createPrng } from "./prng";

function random(length: number, seed: number): Float32Array {
  const prng = createPrng(seed);
  return Float32Array.from({ length }, () => prng.nextFloat() * 2 - 1);
}

describe("attendRows", () => {
  it("gives identical bits for a query whether it is computed in a block of 4 or alone", () => {
    const shape = { numHeads: 4, numKvHeads: 2, headDim: 6 };
    const total = 11;
    const row = shape.numKvHeads * shape.headDim;
    const keys = random(total * row, 3);
    const values = random(total * row, 4);
    const q = random(total * shape.numHeads * shape.headDim, 5);
    const blocked = new Float32Array(q.length);
    attendRows(
      blocked,
      q,
      keys,
      values,
      { ...shape, numTokens: total, pastTokens: 0 },
      createAttentionScratch(),
    );
    const qRow = shape.numHeads * shape.headDim;
    for (let t = 0; t < total; t++) {
      const one = new Float32Array(qRow);
      attendRows(
        one,
        q.subarray(t * qRow, (t + 1) * qRow),
        keys,
        values,
        { ...shape, numTokens: 1, pastTokens: t },
        createAttentionScratch(),
      );
      expect(blocked.subarray(t * qRow, (t + 1) * qRow)).toEqual(one);
    }
  });
});

describe("expNonPositive", () => {
  it("matches Math.exp to 1e-8 relative on [-700, 0] and underflows to 0 below", () => {
    for (let x = 0; x >= -700; x -= 0.0937) {
      const expected = Math.exp(x);
      expect(Math.abs(expNonPositive(x) - expected)).toBeLessThanOrEqual(expected * 1e-8);
    }
    expect(expNonPositive(0)).toBe(1);
    expect(expNonPositive(-800)).toBe(0);
  });
});
