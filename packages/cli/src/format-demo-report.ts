import type { DemoReport } from "./run-demo";

/** The demo summary as aligned text lines. */
export function formatDemoReport(r: DemoReport): string {
  const p = r.projection;
  const rows: [string, string][] = [
    ["device", `${r.device} at ${r.deviceAddress}`],
    ["model", r.model],
    ["prompt tokens", String(r.promptTokens)],
    [
      "KV cache",
      `${formatBytes(r.kvBytes)} (${r.kvDtype}), ${r.layersStreamed} layers streamed layer by layer`,
    ],
    ["time to first layer", `${r.timeToFirstLayerMs.toFixed(1)} ms`],
    ["transfer", `${r.transferGigabytesPerSecond.toFixed(3)} GB/s over loopback gRPC`],
    ["device time (simulated)", `${formatUs(r.deviceTimeUs)}, ${formatJoules(r.energyJoules)}`],
    ["same prefill on h100", `${formatUs(r.h100TimeUs)}, ${formatJoules(r.h100EnergyJoules)}`],
    ["generated", JSON.stringify(r.generatedText)],
    ["matches monolithic run", r.match ? `yes (${r.generatedTokens.length} tokens)` : "NO"],
    [
      `at ${p.model} shape`,
      `${formatBytes(p.kvBytes)} KV (bf16), ${p.transferGigabytesPerSecond.toFixed(2)} GB/s`,
    ],
    ["  device time and energy", `${formatUs(p.deviceTimeUs)}, ${formatJoules(p.energyJoules)}`],
    ["  on h100", `${formatUs(p.h100TimeUs)}, ${formatJoules(p.h100EnergyJoules)}`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n");
}

function formatBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(2)} MiB`;
  return `${(n / 1024).toFixed(1)} KiB`;
}

function formatUs(us: number): string {
  if (us < 1) return "< 1 µs";
  return us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(1)} µs`;
}

function formatJoules(j: number): string {
  return j >= 1 ? `${j.toFixed(2)} J` : `${(j * 1000).toFixed(4)} mJ`;
}
