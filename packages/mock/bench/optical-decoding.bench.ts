/**
 * What a declared error bound does to decoding. For each bound, the mock's optical profile noise
 * (docs/guides/mock.md: readout and shot noise and an ADC sized to the bound, clipped to it) is
 * applied to the prefill K and V of a fixed prompt set on opal-small; a decoder then continues from
 * the noisy cache and from the exact one (its own new tokens' KV exact, as a GPU decoder computes
 * them). Reported per bound:
 * - `top-1 agreement`: share of decode steps whose greedy token from the noisy cache equals the
 *   exact one, both fed the exact continuation (teacher forcing: each step judged on its own);
 * - `greedy sequence agreement`: share of positions where free-running greedy decoding from the
 *   noisy cache produced the exact continuation's token;
 * - `mean KL` and `max KL`: KL(exact || noisy) of the next-token distributions, nats per step.
 * Target: at the optical profile's default bound (0.02), top-1 agreement >= 0.95.
 * Run: node --conditions=source --import tsx packages/mock/bench/optical-decoding.bench.ts
 */
import {
  createByteTokenizer,
  createPresetWeights,
  createReferenceModel,
  type ReferenceKvCache,
  sampleGreedy,
} from "@opal/reference";
import { applyOpticalNoise, OPTICAL_DEFAULT_BOUND, opticalMockProfile } from "../src/index";

const BOUNDS = [0.001, 0.005, 0.02, 0.05, 0.1];
const DECODE_STEPS = 24;
const PROMPTS = [
  "The quick brown fox jumps over the lazy dog.",
  "Prefill on optical hardware, decode on GPUs:",
  "def fibonacci(n):\n    return n if n < 2 else",
  "In 1905, Albert Einstein published four papers that",
  "SELECT name, total FROM orders WHERE total >",
  "Bonjour, je voudrais réserver une table pour",
  "The KV cache of a transformer holds, for every layer,",
  "Once upon a time, in a land far away, there lived",
];

function printFigure(bench: string, metric: string, value: number, target: number | null = null) {
  const line = {
    bench,
    metric,
    value: Number(value.toPrecision(4)),
    baseline: null,
    baselineValue: null,
    ratio: null,
    target,
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function cloneCache(cache: ReferenceKvCache): ReferenceKvCache {
  return {
    ...cache,
    keys: cache.keys.map((k) => k.slice()),
    values: cache.values.map((v) => v.slice()),
  };
}

function softmax(logits: Float32Array): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (const x of logits) max = Math.max(max, x);
  const p = Float64Array.from(logits, (x) => Math.exp(x - max));
  const sum = p.reduce((s, x) => s + x, 0);
  return p.map((x) => x / sum);
}

function klDivergence(exact: Float32Array, noisy: Float32Array): number {
  const p = softmax(exact);
  const q = softmax(noisy);
  let kl = 0;
  for (let i = 0; i < p.length; i++) if (p[i]! > 0) kl += p[i]! * Math.log(p[i]! / q[i]!);
  return Math.max(0, kl);
}

const weights = createPresetWeights("opal-small");
const model = createReferenceModel(weights);
const { numKeyValueHeads, headDim } = model.config;
const tokenizer = createByteTokenizer();

// The exact runs, once: prefill cache, first token, continuation and its logits per step.
const exactRuns = PROMPTS.map((text) => {
  const { cache, logits } = model.prefill(tokenizer.encode(text, { bos: true }));
  const first = sampleGreedy(logits);
  const decode = cloneCache(cache);
  const tokens: number[] = [first];
  const stepLogits: Float32Array[] = [];
  for (let step = 0; step < DECODE_STEPS; step++) {
    const next = model.decodeStep(tokens[step]!, decode).slice();
    stepLogits.push(next);
    tokens.push(sampleGreedy(next));
  }
  return { cache, tokens, stepLogits };
});

for (const bound of BOUNDS) {
  const bench = `mock/optical-decoding-bound-${bound}`;
  let agreeing = 0;
  let sequenceAgreeing = 0;
  let steps = 0;
  let klSum = 0;
  let klMax = 0;
  for (const [p, run] of exactRuns.entries()) {
    const profile = opticalMockProfile({ maxRelError: bound, seed: p });
    const noisy = cloneCache(run.cache);
    for (let layer = 0; layer < noisy.numLayers; layer++) {
      const site = { layer, numTokens: noisy.numTokens, rowLength: numKeyValueHeads * headDim };
      applyOpticalNoise(noisy.keys[layer]!, { ...site, part: 0 }, profile.noise!, profile.numerics);
      applyOpticalNoise(
        noisy.values[layer]!,
        { ...site, part: 1 },
        profile.noise!,
        profile.numerics,
      );
    }
    const forced = cloneCache(noisy);
    const free = cloneCache(noisy);
    let freeToken = run.tokens[0]!;
    for (let step = 0; step < DECODE_STEPS; step++) {
      const logits = model.decodeStep(run.tokens[step]!, forced);
      const exact = run.stepLogits[step]!;
      if (sampleGreedy(logits) === sampleGreedy(exact)) agreeing++;
      const kl = klDivergence(exact, logits);
      klSum += kl;
      klMax = Math.max(klMax, kl);
      freeToken = sampleGreedy(model.decodeStep(freeToken, free));
      if (freeToken === run.tokens[step + 1]) sequenceAgreeing++;
      steps++;
    }
  }
  printFigure(
    bench,
    "top-1 agreement",
    agreeing / steps,
    bound === OPTICAL_DEFAULT_BOUND ? 0.95 : null,
  );
  printFigure(bench, "greedy sequence agreement", sequenceAgreeing / steps);
  printFigure(bench, "mean KL (nats/step)", klSum / steps);
  printFigure(bench, "max KL (nats/step)", klMax);
}
