import { Code } from "@opal/core";
import { describe, expect, it } from "vitest";
import { createByteTokenizer } from "./byte-tokenizer";
import { createPresetWeights } from "./create-preset-weights";
import type { ModelWeights } from "./model-weights";
import { createReferenceKvCache, fromKvLayers, toKvPrefix } from "./reference-kv-cache";
import { createReferenceModel } from "./reference-model";

const tokenizer = createByteTokenizer();
const text = "OPAL offloads prefill to special hardware and hands the KV cache to GPU decoders.";
const prompt = tokenizer.encode(text);
const tiny = createReferenceModel(createPresetWeights("opal-tiny"));

function rows(array: Float32Array, tokens: number, rowLength: number): Float32Array {
  return array.subarray(0, tokens * rowLength);
}

describe("createReferenceModel", () => {
  it("computes the same logits as a naive f64 implementation of the Llama equations", () => {
    for (const name of ["opal-tiny", "opal-small"] as const) {
      const weights = createPresetWeights(name);
      const model = name === "opal-tiny" ? tiny : createReferenceModel(weights);
      const tokens = prompt.subarray(0, 23);
      const { logits } = model.prefill(tokens);
      const expected = naiveLogits(weights, tokens);
      let maxDiff = 0;
      for (let i = 0; i < logits.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(logits[i]! - expected[i]!));
      }
      expect(maxDiff).toBeLessThan(1e-4);
    }
  });

  it("decodes tokens from a prefilled cache exactly as one prefill of the whole sequence", () => {
    const split = 40;
    const { cache, logits: first } = tiny.prefill(prompt.subarray(0, split));
    const stepLogits = [first];
    for (let i = split; i < prompt.length; i++) stepLogits.push(tiny.decodeStep(prompt[i]!, cache));
    for (let n = split; n <= prompt.length; n++) {
      const whole = tiny.prefill(prompt.subarray(0, n)).logits;
      const step = stepLogits[n - split]!;
      let maxDiff = 0;
      for (let i = 0; i < whole.length; i++)
        maxDiff = Math.max(maxDiff, Math.abs(whole[i]! - step[i]!));
      expect(maxDiff).toBeLessThanOrEqual(1e-4);
      expect(step).toEqual(whole); // in fact bit for bit
    }
    const full = tiny.prefill(prompt).cache;
    expect(cache.numTokens).toBe(prompt.length);
    const row = cache.numKvHeads * cache.headDim;
    for (let l = 0; l < cache.numLayers; l++) {
      expect(rows(cache.keys[l]!, prompt.length, row)).toEqual(
        rows(full.keys[l]!, prompt.length, row),
      );
      expect(rows(cache.values[l]!, prompt.length, row)).toEqual(
        rows(full.values[l]!, prompt.length, row),
      );
    }
  });

  it("gives the same greedy tokens by decoding step by step and by re-running the whole sequence", () => {
    const generated = tiny.generate(prompt, { maxNewTokens: 8, stopOnEos: false });
    const sequence = Array.from(prompt);
    for (let i = 0; i < 8; i++) {
      const { logits } = tiny.prefill(sequence);
      let best = 0;
      for (let v = 1; v < logits.length; v++) if (logits[v]! > logits[best]!) best = v;
      sequence.push(best);
    }
    expect(Array.from(generated)).toEqual(sequence.slice(prompt.length));
  });

  it("matches single-shot prefill bit for bit when prefilling in chunks", () => {
    const small = createReferenceModel(createPresetWeights("opal-small"));
    const tokens = prompt.subarray(0, 37);
    const single = small.prefill(tokens);
    for (const cuts of [[1], [5, 17], [4, 8, 12, 36], [36]]) {
      let past = small.prefill(tokens.subarray(0, cuts[0])).cache;
      let logits: Float32Array = new Float32Array(0);
      const bounds = [...cuts, tokens.length];
      for (let c = 0; c + 1 < bounds.length; c++) {
        const result = small.prefill(tokens.subarray(bounds[c], bounds[c + 1]), { past });
        past = result.cache;
        logits = result.logits;
      }
      expect(logits).toEqual(single.logits);
      const row = past.numKvHeads * past.headDim;
      for (let l = 0; l < past.numLayers; l++) {
        expect(rows(past.keys[l]!, tokens.length, row)).toEqual(
          rows(single.cache.keys[l]!, tokens.length, row),
        );
        expect(rows(past.values[l]!, tokens.length, row)).toEqual(
          rows(single.cache.values[l]!, tokens.length, row),
        );
      }
    }
  });

  it("caches a prefix bit for bit as the first rows of the cache of a longer prompt", () => {
    const long = tiny.prefill(prompt).cache;
    const row = long.numKvHeads * long.headDim;
    for (const n of [1, 2, 3, 4, 5, 16, 33]) {
      const short = tiny.prefill(prompt.subarray(0, n)).cache;
      for (let l = 0; l < short.numLayers; l++) {
        expect(rows(short.keys[l]!, n, row)).toEqual(rows(long.keys[l]!, n, row));
        expect(rows(short.values[l]!, n, row)).toEqual(rows(long.values[l]!, n, row));
      }
    }
  });

  it("is deterministic across runs and model instances", () => {
    const again = createReferenceModel(createPresetWeights("opal-tiny"));
    expect(again.fingerprint).toBe(tiny.fingerprint);
    expect(again.prefill(prompt).logits).toEqual(tiny.prefill(prompt).logits);
    const sampling = { kind: "seeded", seed: 7, temperature: 0.9, topK: 20 } as const;
    expect(again.generate(prompt, { maxNewTokens: 12, sampling })).toEqual(
      tiny.generate(prompt, { maxNewTokens: 12, sampling }),
    );
  });

  it("leaves the past cache untouched and continues from a cache rebuilt from layer arrays", () => {
    const { cache } = tiny.prefill(prompt.subarray(0, 10));
    const before = toKvPrefix(cache);
    const continued = tiny.prefill(prompt.subarray(10), { past: cache });
    expect(cache.numTokens).toBe(10);
    const row = cache.numKvHeads * cache.headDim;
    for (let l = 0; l < cache.numLayers; l++) {
      expect(rows(cache.keys[l]!, 10, row)).toEqual(rows(before.keys[l]!, 10, row));
    }
    const rebuilt = fromKvLayers(tiny.config, cache.keys, cache.values, 10);
    expect(tiny.prefill(prompt.subarray(10), { past: rebuilt }).logits).toEqual(continued.logits);
  });

  it("reports each layer's new K and V rows to onLayer, in order", () => {
    const seen: number[] = [];
    const { cache } = tiny.prefill(prompt.subarray(0, 9), {
      onLayer(layer, keys, values) {
        seen.push(layer);
        expect(keys.length).toBe(9 * tiny.config.numKeyValueHeads * tiny.config.headDim);
        expect(values.length).toBe(keys.length);
      },
    });
    expect(seen).toEqual([0, 1]);
    expect(cache.numTokens).toBe(9);
  });

  it("grows a small cache on demand", () => {
    const cache = createReferenceKvCache(tiny.config, { capacityTokens: 1 });
    for (const token of prompt.subarray(0, 20)) tiny.decodeStep(token, cache);
    expect(cache.numTokens).toBe(20);
    expect(cache.capacityTokens).toBeGreaterThanOrEqual(20);
    expect(tiny.decodeStep(prompt[20]!, cache)).toEqual(
      tiny.prefill(prompt.subarray(0, 21)).logits,
    );
  });

  it("checks layer arrays before allocating a rebuilt cache, and cache capacities", () => {
    const { cache } = tiny.prefill(prompt.subarray(0, 4));
    // 2^30 claimed tokens: the arrays hold 4 rows, so nothing may be allocated for the claim.
    expect(() => fromKvLayers(tiny.config, cache.keys, cache.values, 2 ** 30)).toThrow(
      expect.objectContaining({ code: Code.INVALID_ARGUMENT, reason: "INVALID_FIELD" }),
    );
    for (const capacityTokens of [Number.NaN, -1, 1.5]) {
      expect(() => createReferenceKvCache(tiny.config, { capacityTokens })).toThrow(
        expect.objectContaining({ code: Code.INVALID_ARGUMENT, reason: "INVALID_FIELD" }),
      );
    }
  });

  it("rejects bad tokens, empty prompts, over-long contexts and foreign caches", () => {
    expect(() => tiny.prefill([300])).toThrow(
      /token 300 at index 0 out of range \(vocabulary has 258/,
    );
    expect(() => tiny.prefill([])).toThrow(expect.objectContaining({ reason: "PROMPT_EMPTY" }));
    expect(() => tiny.prefill(new Uint32Array(4097))).toThrow(
      expect.objectContaining({ code: Code.INVALID_ARGUMENT, reason: "PROMPT_TOO_LONG" }),
    );
    const small = createPresetWeights("opal-small");
    const foreign = createReferenceKvCache(small.config);
    expect(() => tiny.decodeStep(1, foreign)).toThrow(
      expect.objectContaining({ reason: "INVALID_FIELD" }),
    );
    expect(() => tiny.generate(prompt, { maxNewTokens: -1 })).toThrow(/maxNewTokens/);
  });

  it("stops with CANCELLED when the signal is aborted", () => {
    const controller = new AbortController();
    controller.abort();
    expect(() => tiny.prefill(prompt, { signal: controller.signal })).toThrow(
      expect.objectContaining({ code: Code.CANCELLED }),
    );
  });

  it("stops generating at EOS unless told otherwise", () => {
    const eos = tiny.config.eosTokenId as number;
    const weights = createPresetWeights("opal-tiny");
    // Make EOS the argmax everywhere by boosting its (tied) embedding row.
    const embed = Float32Array.from(weights.embedTokens);
    const model = createReferenceModel({ ...weights, embedTokens: embed, lmHead: embed });
    const { logits } = model.prefill(prompt);
    const top = logits.indexOf(Math.max(...logits));
    for (let i = 0; i < 64; i++) embed[eos * 64 + i] = embed[top * 64 + i]! * 4;
    const boosted = createReferenceModel({ ...weights, embedTokens: embed, lmHead: embed });
    expect(Array.from(boosted.generate(prompt, { maxNewTokens: 5 }))).toEqual([eos]);
    expect(boosted.generate(prompt, { maxNewTokens: 5, stopOnEos: false }).length).toBe(5);
  });
});

/**
 * The Llama equations written out directly in f64, independently of the optimised kernels:
 * HF `rotate_half` rotary (pairs i and i + d/2), llama3 frequency scaling, GQA, SwiGLU, RMSNorm.
 */
function naiveLogits(weights: ModelWeights, tokens: ArrayLike<number>): Float64Array {
  const c = weights.config;
  const h = c.hiddenSize;
  const d = c.headDim;
  const n = tokens.length;
  const matvec = (w: Float32Array, x: Float64Array, out: number) => {
    const y = new Float64Array(out);
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let i = 0; i < x.length; i++) s += w[o * x.length + i]! * x[i]!;
      y[o] = s;
    }
    return y;
  };
  const norm = (x: Float64Array, w: Float32Array) => {
    let ms = 0;
    for (const v of x) ms += v * v;
    const r = 1 / Math.sqrt(ms / x.length + c.rmsNormEps);
    return x.map((v, i) => v * r * w[i]!);
  };
  const invFreq: number[] = [];
  for (let k = 0; k < d / 2; k++) {
    let f = 1 / c.ropeTheta ** ((2 * k) / d);
    const s = c.ropeScaling;
    if (s) {
      const wavelen = (2 * Math.PI) / f;
      const low = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
      const high = s.originalMaxPositionEmbeddings / s.highFreqFactor;
      if (wavelen > low) f /= s.factor;
      else if (wavelen >= high) {
        const smooth =
          (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) /
          (s.highFreqFactor - s.lowFreqFactor);
        f = (1 - smooth) * (f / s.factor) + smooth * f;
      }
    }
    invFreq.push(f);
  }
  const rope = (x: Float64Array, heads: number, pos: number) => {
    for (let hh = 0; hh < heads; hh++) {
      const b = hh * d;
      const rotated = new Float64Array(d);
      for (let i = 0; i < d; i++) rotated[i] = i < d / 2 ? -x[b + i + d / 2]! : x[b + i - d / 2]!;
      for (let i = 0; i < d; i++) {
        const angle = pos * invFreq[i % (d / 2)]!;
        x[b + i] = x[b + i]! * Math.cos(angle) + rotated[i]! * Math.sin(angle);
      }
    }
  };
  let xs = Array.from(tokens, (t) =>
    Float64Array.from(weights.embedTokens.subarray(t * h, (t + 1) * h)),
  );
  for (const w of weights.layers) {
    const qs: Float64Array[] = [];
    const ks: Float64Array[] = [];
    const vs: Float64Array[] = [];
    xs.forEach((x, pos) => {
      const xn = norm(x, w.inputLayernorm);
      const q = matvec(w.qProj, xn, c.numAttentionHeads * d);
      const k = matvec(w.kProj, xn, c.numKeyValueHeads * d);
      rope(q, c.numAttentionHeads, pos);
      rope(k, c.numKeyValueHeads, pos);
      qs.push(q);
      ks.push(k);
      vs.push(matvec(w.vProj, xn, c.numKeyValueHeads * d));
    });
    xs = xs.map((x, pos) => {
      const attn = new Float64Array(c.numAttentionHeads * d);
      for (let hh = 0; hh < c.numAttentionHeads; hh++) {
        const g = Math.floor(hh / (c.numAttentionHeads / c.numKeyValueHeads));
        const scores = [];
        for (let j = 0; j <= pos; j++) {
          let s = 0;
          for (let i = 0; i < d; i++) s += qs[pos]![hh * d + i]! * ks[j]![g * d + i]!;
          scores.push(s / Math.sqrt(d));
        }
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const sum = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= pos; j++) {
          for (let i = 0; i < d; i++) attn[hh * d + i]! += (e[j]! / sum) * vs[j]![g * d + i]!;
        }
      }
      const o = matvec(w.oProj, attn, h);
      const x1 = x.map((v, i) => v + o[i]!);
      const xn = norm(x1, w.postAttentionLayernorm);
      const gate = matvec(w.gateProj, xn, c.intermediateSize);
      const up = matvec(w.upProj, xn, c.intermediateSize);
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
      const down = matvec(w.downProj, act, h);
      return x1.map((v, i) => v + down[i]!);
    });
  }
  return matvec(weights.lmHead, norm(xs[n - 1]!, weights.norm), c.vocabSize);
}
