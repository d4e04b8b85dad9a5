import { Code } from "@opal/core";
import { describe, expect, it } from "vitest";
import { createSampler, createSeededSampler, sampleGreedy } from "./sampling";

describe("sampleGreedy", () => {
  it("picks the largest logit, lowest id on ties", () => {
    expect(sampleGreedy([0, 3, 1, 3])).toBe(1);
    expect(() => sampleGreedy([])).toThrow(/0 logits/);
    expect(sampleGreedy([Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY])).toBe(0);
  });

  it("ignores NaN logits wherever they are, and fails clearly when all are NaN", () => {
    expect(sampleGreedy([Number.NaN, 1, 5, 2])).toBe(2);
    expect(sampleGreedy(Float32Array.of(Number.NaN, -3, -1))).toBe(2);
    expect(sampleGreedy([1, Number.NaN, 0])).toBe(0);
    expect(() => sampleGreedy([Number.NaN, Number.NaN])).toThrow(
      expect.objectContaining({
        code: Code.INVALID_ARGUMENT,
        reason: "INVALID_FIELD",
        message:
          "[invalid_argument] cannot sample from 2 logits, all NaN (expected at least one logit that is not NaN)",
      }),
    );
  });
});

describe("createSeededSampler", () => {
  const logits = Float32Array.from({ length: 50 }, (_, i) => Math.sin(i) * 3);

  it("repeats the same draws for the same seed and differs for another", () => {
    const draw = (seed: number) => {
      const sampler = createSeededSampler({ seed, temperature: 1 });
      return Array.from({ length: 40 }, () => sampler.sample(logits));
    };
    expect(draw(1)).toEqual(draw(1));
    expect(draw(1)).not.toEqual(draw(2));
  });

  it("keeps to the top-k tokens and follows the softmax distribution", () => {
    const sampler = createSeededSampler({ seed: 3, temperature: 1, topK: 2 });
    const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!);
    const counts = new Map<number, number>();
    for (let i = 0; i < 4000; i++) {
      const t = sampler.sample(logits);
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual(order.slice(0, 2).sort());
    const p = 1 / (1 + Math.exp(logits[order[1]!]! - logits[order[0]!]!));
    expect(Math.abs(counts.get(order[0]!)! / 4000 - p)).toBeLessThan(0.03);
  });

  it("is greedy at temperature 0 and rejects invalid options", () => {
    expect(createSeededSampler({ seed: 1, temperature: 0 }).sample(logits)).toBe(
      sampleGreedy(logits),
    );
    expect(() => createSeededSampler({ seed: 1, temperature: -1 })).toThrow(/temperature/);
    expect(() => createSeededSampler({ seed: 1, temperature: 1, topK: 1.5 })).toThrow(/topK/);
    expect(createSampler({ kind: "greedy" }).sample(logits)).toBe(sampleGreedy(logits));
  });
});
