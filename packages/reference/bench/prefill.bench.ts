/**
 * Prefill throughput of the reference model on one core: tokens/s and effective GFLOP/s (counted by
 * `prefillFlops`) for opal-tiny and opal-small at 512 and 2048 tokens. Target: 1.5 GFLOP/s.
 * Run: node --conditions=source --import tsx packages/reference/bench/prefill.bench.ts
 */
import { createPresetWeights, createReferenceModel, prefillFlops } from "@opal/reference";
import { medianSeconds, printFigure } from "./report";

for (const name of ["opal-tiny", "opal-small"] as const) {
  const model = createReferenceModel(createPresetWeights(name));
  for (const numTokens of [512, 2048]) {
    const tokens = Uint32Array.from({ length: numTokens }, (_, i) => (i * 7919 + 13) % 256);
    const runs = name === "opal-small" && numTokens === 2048 ? 1 : 3;
    const seconds = medianSeconds(() => model.prefill(tokens), runs);
    const bench = `reference/prefill-${name}-${numTokens}`;
    printFigure({ bench, metric: "tokens/s", value: numTokens / seconds });
    printFigure({
      bench,
      metric: "GFLOP/s",
      value: prefillFlops(model.config, numTokens) / seconds / 1e9,
      target: 1.5,
    });
  }
}
