// Baseline for the streaming benchmark: a plain TCP server in its own process that writes N MiB
// to each connection (with back-pressure) and closes it. Prints "listening on ADDRESS".
import { createServer } from "node:net";

const payload = Buffer.alloc(1 << 20, 7);
const server = createServer((socket) => {
  socket.once("data", async (request) => {
    const count = request.readUInt32LE(0);
    for (let i = 0; i < count; i++) {
      if (!socket.write(payload)) await new Promise((resolve) => socket.once("drain", resolve));
    }
    socket.end();
  });
});
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  console.log(`listening on 127.0.0.1:${address.port}`);
});
