// Child process of stream.bench.ts: the receiving side of every streaming path, measured in one
// plain-JavaScript process on the built packages (`npm run bench` builds first), as an integrator's
// process runs the SDK: no TypeScript loader, no benchmark harness in its heap.
//
// Usage: stream-clients.mjs BARE_ADDRESS DEVICE_ADDRESS SHM_DEVICE_ADDRESS [PATHS]
// PATHS is a comma-separated subset of bare, bareKeeping, inline and shm (default: all). Prints one
// JSON line: the best GB/s of each path measured, and the message size the bare stream used (the
// device's largest chunk).
//
// Steady state, as in a process that streams caches back to back: no forced GC (a forced full
// collection before a run leaves the next one cold and roughly halves every path, the baseline
// included), paths measured in blocks so each pays only its own garbage, the first run of each
// block discarded. The machines are shared and noisy: blocks rotate three times over the paths, and
// each path keeps its best run.
import { Client, credentials } from "@grpc/grpc-js";
import { createDeviceClient, startPrefill } from "@opal/client";

const MIB = 1 << 20;
const CACHE_BYTES = 256 * MIB;
const [bareAddress, deviceAddress, shmDeviceAddress, only] = process.argv.slice(2);

// The SDK's channel settings, passed to the bare client too.
const channel = {
  "grpc.max_receive_message_length": 64 * MIB,
  "grpc-node.flow_control_window": 16 * MIB,
};

/**
 * One read of `count` messages of `size` bytes from the bare grpc-js server, in GB/s. With `keep`,
 * the messages are kept until the read ends, as any sink that keeps a cache must keep its bytes.
 */
async function bareStream(client, count, size, keep) {
  const request = Buffer.alloc(8);
  request.writeUInt32LE(count, 0);
  request.writeUInt32LE(size, 4);
  const started = performance.now();
  let bytes = 0;
  const identity = (b) => b;
  const stream = client.makeServerStreamRequest("/bench.Bare/Stream", identity, identity, request);
  const kept = [];
  for await (const message of stream) {
    bytes += message.byteLength;
    if (keep) kept.push(message);
  }
  return bytes / ((performance.now() - started) / 1000) / 1e9;
}

const device = createDeviceClient(deviceAddress, { dataPlane: "inline" });
const shmDevice = createDeviceClient(shmDeviceAddress, { dataPlane: "shared-memory" });
// The SDK asks the device for its largest chunk (the mock's 4 MiB: one chunk per layer part); the
// bare stream sends messages of that size.
const messageBytes = (await device.getCapabilities()).maxChunkBytes;
const bareClient = new Client(bareAddress, credentials.createInsecure(), channel);

let run = 0;
/** One 256 MiB prefill (Llama-3-8B shape, 2,048 tokens, bf16) into the memory sink, in GB/s. */
async function prefill(client) {
  run += 1;
  const outcome = await startPrefill(client, {
    requestId: `stream-${process.pid}-${run}`,
    modelId: "llama-3-8b",
    promptTokenIds: Uint32Array.from({ length: 2048 }, (_, i) => (i * 31 + run) % 128_000),
    kvFormat: { dtype: "bf16", scaleScheme: "none", layout: "nhd", blockSizeTokens: 16 },
  }).result;
  return outcome.transfer.gigabytesPerSecond;
}

const count = CACHE_BYTES / messageBytes;
const paths = {
  bare: () => bareStream(bareClient, count, messageBytes, false),
  bareKeeping: () => bareStream(bareClient, count, messageBytes, true),
  inline: () => prefill(device),
  shm: () => prefill(shmDevice),
};
const measured = Object.entries(paths).filter(([name]) => !only || only.split(",").includes(name));
const best = Object.fromEntries(measured.map(([name]) => [name, 0]));
for (let round = 0; round < 3; round++) {
  for (const [name, measure] of measured) {
    for (let i = 0; i < 4; i++) {
      const gbps = await measure();
      if (i > 0) best[name] = Math.max(best[name], gbps);
    }
  }
}
bareClient.close();
await device.close();
await shmDevice.close();
console.log(JSON.stringify({ ...best, messageBytes }));
