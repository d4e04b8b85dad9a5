// Child process of stream.bench.ts: streams a ~4 GiB cache (Llama-3-70B shape, 6,554 tokens, f32)
// from the device at argv[2] into a .okv file sink at argv[3]; prints {"maxRssMiB", "gigabytes"}.
// Plain JavaScript on the built package (`npm run bench` builds first), as an integrator's process
// runs it: no TypeScript loader in the measured process.
import { createDeviceClient, createOkvFileSink, startPrefill } from "@opal/client";

const [target, path] = process.argv.slice(2);
const device = createDeviceClient(target);
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
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
    gigabytes: outcome.transfer.kvBytes / 1e9,
  }),
);
