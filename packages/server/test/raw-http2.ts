import { connect } from "node:net";

/** What a hand-made HTTP/2 call saw on its stream. */
export interface RawCallResult {
  /** A DATA frame arrived: the server answered with a message (the call was served). */
  readonly served: boolean;
}

/**
 * Sends one unary gRPC call with an empty request message over a hand-framed HTTP/2 connection
 * (RFC 9113 frames, RFC 7541 literal header fields), so that headers may repeat exactly as an
 * attacker would send them: Node's own HTTP/2 client refuses a repeated `authorization`. Resolves
 * once the stream ends.
 */
export function rawUnaryCall(
  address: string,
  path: string,
  headers: ReadonlyArray<readonly [string, string]>,
): Promise<RawCallResult> {
  const [host, port] = [address.slice(0, address.lastIndexOf(":")), address.split(":").pop()];
  const socket = connect(Number(port), host);
  const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
    const head = Buffer.alloc(9);
    head.writeUIntBE(payload.length, 0, 3);
    head[3] = type;
    head[4] = flags;
    head.writeUInt32BE(stream, 5);
    return Buffer.concat([head, payload]);
  };
  const literal = (name: string, value: string) =>
    // Literal header field without indexing, new name, no Huffman coding; lengths below 127.
    Buffer.concat([
      Buffer.from([0x00, name.length]),
      Buffer.from(name),
      Buffer.from([value.length]),
      Buffer.from(value),
    ]);
  const block = Buffer.concat(
    [
      [":method", "POST"],
      [":scheme", "http"],
      [":path", path],
      [":authority", address],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
      ...headers,
    ].map(([name, value]) => literal(name!, value!)),
  );
  socket.write(
    Buffer.concat([
      Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
      frame(4, 0, 0, Buffer.alloc(0)),
      frame(1, 0x4, 1, block),
      frame(0, 0x1, 1, Buffer.alloc(5)),
    ]),
  );
  return new Promise((resolve, reject) => {
    let pending = Buffer.alloc(0);
    let served = false;
    const done = (result: RawCallResult | Error) => {
      socket.destroy();
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    socket.on("error", done);
    socket.on("close", () => done(new Error("the connection closed before the stream ended")));
    socket.on("data", (data: Buffer) => {
      pending = Buffer.concat([pending, data]);
      while (pending.length >= 9) {
        const length = pending.readUIntBE(0, 3);
        if (pending.length < 9 + length) return;
        const [type, flags, stream] = [pending[3]!, pending[4]!, pending.readUInt32BE(5)];
        pending = pending.subarray(9 + length);
        if (type === 4 && !(flags & 0x1)) socket.write(frame(4, 0x1, 0, Buffer.alloc(0)));
        if (stream !== 1) continue;
        if (type === 0) served = true;
        const ended = (type === 0 || type === 1) && flags & 0x1;
        if (ended || type === 3) return done({ served });
      }
    });
  });
}
