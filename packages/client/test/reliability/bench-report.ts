/** Shared helper of the reliability benchmarks (packages/client/bench): the one-JSON-line-per-figure output of tools/bench.mjs. */

/** The limit a figure is judged by: a minimum (`target`) or a maximum (`max`), or none. */
export type FigureLimit = { readonly target: number } | { readonly max: number } | undefined;

/**
 * Prints one figure as the JSON line tools/bench.mjs collects. `value` is rounded to 3 decimals;
 * absolute figures have no baseline.
 */
export function reportFigure(
  bench: string,
  metric: string,
  value: number,
  limit?: FigureLimit,
): void {
  console.log(
    JSON.stringify({
      bench,
      metric,
      value: Math.round(value * 1000) / 1000,
      baseline: null,
      baselineValue: null,
      ratio: null,
      target: limit && "target" in limit ? limit.target : null,
      ...(limit && "max" in limit ? { max: limit.max } : {}),
    }),
  );
}
