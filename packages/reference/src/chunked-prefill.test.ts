import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createPresetWeights } from "./create-preset-weights";
import { createReferenceModel } from "./reference-model";

const model = createReferenceModel(createPresetWeights("opal-tiny"));

/** Rows `0..n-1` of every layer's keys and values, concatenated. */
function cacheRows(cache: ReturnType<typeof model.prefill>["cache"]): Float32Array[] {
  const row = cache.numKvHeads * cache.headDim;
  return [...cache.keys, ...cache.values].map((a) => a.slice(0, cache.numTokens * row));
}

describe("prefill in any chunking", () => {
  it("equals single-shot prefill bit for bit for random prompts, cuts and decode steps", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 257 }), { minLength: 1, maxLength: 40 }),
        fc.array(fc.integer({ min: 1, max: 39 }), { maxLength: 5 }),
        (tokens, rawCuts) => {
          const cuts = [...new Set(rawCuts.filter((c) => c < tokens.length))].sort((a, b) => a - b);
          const single = model.prefill(tokens);
          const bounds = [0, ...cuts, tokens.length];
          let result = model.prefill(tokens.slice(0, bounds[1]));
          for (let i = 1; i + 1 < bounds.length; i++) {
            const chunk = tokens.slice(bounds[i], bounds[i + 1]);
            // Single-token chunks go through decodeStep, longer ones through prefill with past.
            if (chunk.length === 1) {
              const logits = model.decodeStep(chunk[0]!, result.cache);
              result = { cache: result.cache, logits };
            } else {
              result = model.prefill(chunk, { past: result.cache });
            }
          }
          expect(result.logits).toEqual(single.logits);
          expect(cacheRows(result.cache)).toEqual(cacheRows(single.cache));
        },
      ),
      { numRuns: 25, seed: 42 },
    );
  });
});
