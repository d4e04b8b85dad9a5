// Child process of stream.bench.ts: streams a ~4 GiB cache (Llama-3-70B shape, 6,554 tokens, f32)
// from the device at argv[2] into a .okv file sink at argv[3], over the data plane argv[4] ("inline"
// or "shared-memory"); prints {"maxRssMiB", "gigabytes"}.
// Plain JavaScript on the built package (`npm run bench` builds first), as an integrator's process
// runs it: no TypeScript loader in the measured process.
import { readFileSync } from "node:fs";
import { createDeviceClient, createOkvFileSink, startPrefill } from "@opal/client";

/**
 * This process's peak RSS in MiB: VmHWM of /proc/self/status. Not `resourceUsage().maxRSS`: on
 * Linux that includes the parent's RSS at fork time (carried across exec), so a child of a large
 * benchmark process would report the parent's memory.
 */
function peakRssMiB() {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync("/proc/self/status", "utf8"));
  return match ? Number(match[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
}

const [target, path, dataPlane] = process.argv.slice(2);
const device = createDeviceClient(target, { dataPlane });
const outcome = await startPrefill(
  device,
  {
    requestId: `rss-4gib-${process.pid}`,
    modelId: "llama-3-70b",
    promptTokenIds: Uint32Array.from({ length: 6554 }, (_, i) => i % 128_000),
    kvFormat: { dtype: "f32", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  },
  { sink: () => createOkvFileSink({ path }), timeoutMs: 600_000 },
).result;
await device.close();
console.log(
  JSON.stringify({
    maxRssMiB: peakRssMiB(),
    gigabytes: outcome.transfer.kvBytes / 1e9,
  }),
);
