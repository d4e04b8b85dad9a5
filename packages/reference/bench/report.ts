/** One benchmark figure, printed as one JSON line on stdout. */
export interface BenchFigure {
  readonly bench: string;
  readonly metric: string;
  readonly value: number;
  readonly baseline?: string | null;
  readonly baselineValue?: number | null;
  readonly target?: number | null;
}

/** Prints `figure` as one JSON line with the fields in the repository's fixed order. */
export function printFigure(figure: BenchFigure): void {
  const round = (v: number) => Number(v.toPrecision(4));
  const baselineValue = figure.baselineValue ?? null;
  const line = {
    bench: figure.bench,
    metric: figure.metric,
    value: round(figure.value),
    baseline: figure.baseline ?? null,
    baselineValue: baselineValue === null ? null : round(baselineValue),
    ratio: baselineValue === null ? null : round(figure.value / baselineValue),
    target: figure.target ?? null,
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** Median of `runs` timings (seconds) of `fn`, after one untimed warm-up call. */
export function medianSeconds(fn: () => void, runs: number): number {
  fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    fn();
    times.push((performance.now() - start) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}
