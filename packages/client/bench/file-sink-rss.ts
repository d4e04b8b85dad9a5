// Child process of stream.bench.ts: streams a ~4 GiB cache (Llama-3-70B shape, 6,554 tokens, f32)
// from the device at argv[2] into a .okv file sink at argv[3]; prints {"maxRssMiB", "gigabytes"}.
import { createDeviceClient, createOkvFileSink, startPrefill } from "../src/index";

const [target, path] = process.argv.slice(2) as [string, string];
const device = createDeviceClient(target);
const outcome = await startPrefill(
  device,
  {
    requestId: "rss-4gib",
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
