import { readFileSync } from "node:fs";
/** Shared helpers of the kv benchmarks: timing and the one-JSON-line-per-figure output. */

/** Best wall time of `runs` calls of `fn`, in seconds (after one warm-up call). */
export function bestSeconds(fn: () => void, runs = 5): number {
  fn();
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    fn();
    best = Math.min(best, (performance.now() - start) / 1000);
  }
  return best;
}

/** memcpy throughput over `byteLength` bytes in GB/s (TypedArray.set into a reused buffer). */
export function memcpyGBps(byteLength: number): number {
  const src = new Uint8Array(byteLength).fill(1);
  const dst = new Uint8Array(byteLength);
  return byteLength / bestSeconds(() => dst.set(src)) / 1e9;
}

/**
 * memcpy throughput into newly allocated memory, in GB/s: what any code that fills a new buffer
 * pays for page faults, as decoding a stream into a new cache does.
 */
export function freshMemcpyGBps(byteLength: number): number {
  const src = new Uint8Array(byteLength).fill(1);
  return byteLength / bestSeconds(() => new Uint8Array(byteLength).set(src)) / 1e9;
}

/**
 * This process's peak RSS in MiB: VmHWM of /proc/self/status. Not `resourceUsage().maxRSS`: on
 * Linux that includes the parent's RSS at fork time (carried across exec), so a child of a large
 * benchmark process would report the parent's memory.
 */
export function peakRssMiB(): number {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync("/proc/self/status", "utf8"));
  return match ? Number(match[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
}

const round = (x: number) => Math.round(x * 1000) / 1000;

/** Prints a throughput figure relative to a baseline measured in the same run. */
export function reportRatio(
  bench: string,
  value: number,
  baselineValue: number,
  target: number,
  baseline = "memcpy",
): void {
  console.log(
    JSON.stringify({
      bench,
      metric: "GB/s",
      value: round(value),
      baseline,
      baselineValue: round(baselineValue),
      ratio: round(value / baselineValue),
      target,
    }),
  );
}

/** Prints an absolute figure in millions of elements per second. */
export function reportMelems(bench: string, value: number, target: number): void {
  console.log(
    JSON.stringify({
      bench,
      metric: "Melem/s",
      value: round(value),
      baseline: null,
      baselineValue: null,
      ratio: null,
      target,
    }),
  );
}

/** Prints a memory figure with its maximum. */
export function reportMiB(bench: string, value: number, max: number): void {
  console.log(JSON.stringify({ bench, metric: "MiB", value: round(value), max }));
}
