import { describe, expect, it } from "vitest";
import { matmulRows } from "./kernels";
import { createPrng } from "./prng";

function random(length: number, seed: number): Float32Array {
  const prng = createPrng(seed);
  return Float32Array.from({ length }, () => prng.nextFloat() * 2 - 1);
}

describe("matmulRows", () => {
  it("computes x W^T with every token and row count (blocked and remainder paths agree)", () => {
    for (const [tokens, inDim, outDim] of [
      [1, 3, 1],
      [4, 8, 2],
      [7, 5, 9],
      [9, 16, 3],
    ] as const) {
      const x = random(tokens * inDim, 1);
      const w = random(outDim * inDim, 2);
      const out = new Float32Array(tokens * outDim);
      matmulRows(out, x, w, tokens, inDim, outDim);
      for (let t = 0; t < tokens; t++) {
        // One row alone must give the same bits as the row inside a block.
        const single = new Float32Array(outDim);
        matmulRows(single, x.subarray(t * inDim, (t + 1) * inDim), w, 1, inDim, outDim);
        expect(out.subarray(t * outDim, (t + 1) * outDim)).toEqual(single);
        for (let o = 0; o < outDim; o++) {
          let s = 0;
          for (let i = 0; i < inDim; i++) s += x[t * inDim + i]! * w[o * inDim + i]!;
          expect(out[t * outDim + o]).toBe(Math.fround(s));
        }
      }
    }
  });
});
