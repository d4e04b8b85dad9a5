/**
 * The full chaos run: 1,000 prefills through a pool of three mock devices with faults injected
 * (10% Prefill/FetchKv errors, 10% aborted streams, 10% corrupt chunks, one device killed and
 * restarted mid-run) and hostile requests mixed in. Prints the figures as text on stderr and as
 * JSON lines on stdout. `npm test` runs the same scenario with 150 prefills
 * (packages/client/test/reliability/chaos.test.ts).
 * Run: node --conditions=source --import tsx packages/client/bench/chaos.bench.ts
 */

import { reportFigure } from "../test/reliability/bench-report";
import { formatChaosFigures, runChaos } from "../test/reliability/chaos-run";

const figures = await runChaos({ prefills: 1000, concurrency: 16 });
console.error(formatChaosFigures(figures));
const b = "reliability/chaos";
const wellFormed = figures.prefills - figures.badInputsTried;
reportFigure(`${b}-prefills`, "count", figures.prefills, { target: 1000 });
reportFigure(`${b}-faults-injected`, "count", figures.faultsInjected, { target: 1 });
reportFigure(`${b}-completed`, "count", figures.completed, { target: Math.ceil(wellFormed * 0.9) });
reportFigure(`${b}-failed-clearly`, "count", figures.failedClearly);
reportFigure(`${b}-unclear-failures`, "count", figures.unclearFailures, { max: 0 });
reportFigure(`${b}-wrong-bytes-caches`, "count", figures.wrongBytesDelivered, { max: 0 });
reportFigure(`${b}-bad-inputs-tried`, "count", figures.badInputsTried, { target: 1 });
reportFigure(`${b}-bad-inputs-accepted`, "count", figures.badInputsAccepted, { max: 0 });
reportFigure(`${b}-bytes-lost`, "bytes", figures.bytesLost, { max: 0 });
reportFigure(`${b}-active-prefills-left`, "count", figures.activePrefillsLeft, { max: 0 });
reportFigure(`${b}-heap-growth`, "MiB", figures.heapGrowthMiB, { max: 32 });
reportFigure(`${b}-throughput`, "prefills/s", figures.prefillsPerSecond);
const ok =
  figures.wrongBytesDelivered === 0 &&
  figures.bytesLost === 0 &&
  figures.unclearFailures === 0 &&
  figures.badInputsAccepted === 0;
process.exitCode = ok ? 0 : 1;
