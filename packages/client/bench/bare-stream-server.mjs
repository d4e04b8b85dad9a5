// Baseline server for the streaming benchmark: a bare grpc-js server that streams raw messages (no
// protobuf, no checksums) with the same transport settings as OPAL. The request is two uint32 LE:
// message count, and message size in bytes (default 1 MiB when absent). Like a KV cache, the bytes
// are distinct: consecutive slices of a 256 MiB buffer, not one hot buffer re-sent (which would
// stay in the CPU cache and flatter the baseline). Prints "listening on ADDRESS".
import { Server, ServerCredentials } from "@grpc/grpc-js";

const identity = (b) => b;
const server = new Server({
  "grpc.max_send_message_length": 64 << 20,
  "grpc.max_receive_message_length": 64 << 20,
});
const MIB = 1 << 20;
const source = Buffer.allocUnsafe(256 * MIB);
for (let i = 0; i < source.length; i += 4) source.writeUInt32LE((i * 2654435761) >>> 0, i);
server.addService(
  {
    stream: {
      path: "/bench.Bare/Stream",
      requestStream: false,
      responseStream: true,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  {
    async stream(call) {
      const count = call.request.readUInt32LE(0);
      const size = call.request.byteLength >= 8 ? call.request.readUInt32LE(4) : MIB;
      const slots = Math.floor(source.byteLength / size);
      for (let i = 0; i < count; i++) {
        const at = (i % slots) * size;
        const payload = source.subarray(at, at + size);
        if (!call.write(payload)) await new Promise((resolve) => call.once("drain", resolve));
      }
      call.end();
    },
  },
);
server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, port) => {
  if (error) throw error;
  console.log(`listening on 127.0.0.1:${port}`);
});
