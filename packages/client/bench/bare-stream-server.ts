// Baseline server for the streaming benchmark: a bare grpc-js server that streams `count` raw
// messages of `bytes` bytes (no protobuf, no checksums) with the same transport settings as OPAL.
// Prints "listening on ADDRESS".
import { Server, ServerCredentials, type ServerWritableStream } from "@grpc/grpc-js";

const identity = (b: Buffer) => b;
const server = new Server({
  "grpc.max_send_message_length": 64 << 20,
  "grpc.max_receive_message_length": 64 << 20,
});
const payload = Buffer.alloc(1 << 20, 7);
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
    async stream(call: ServerWritableStream<Buffer, Buffer>) {
      const count = call.request.readUInt32LE(0);
      for (let i = 0; i < count; i++) {
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
