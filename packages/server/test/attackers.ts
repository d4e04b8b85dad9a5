import { connect } from "node:http2";
import type { PrefillRequest } from "@opal/driver";
import { DeviceServiceDefinition, toWirePrefillRequest } from "@opal/protocol";

/** A Prefill stream whose caller does not read. */
export interface UnreadStream {
  /** Starts reading: resolves with the bytes received and the call's grpc-status and message. */
  readAll(): Promise<{ readonly bytes: number; readonly code: number; readonly details: string }>;
  /** Closes the connection. */
  close(): void;
}

/**
 * Opens a Prefill call over Node's HTTP/2 client and reads nothing, as a caller that stalls on
 * purpose: a paused HTTP/2 stream sends no WINDOW_UPDATE, so the server can send one window (64
 * KiB) and then its writes stop draining. (grpc-js clients keep reading into memory whatever the
 * application does, so they cannot show this.) One connection per stream.
 */
export function openUnreadPrefill(
  address: string,
  token: string | undefined,
  request: PrefillRequest,
): UnreadStream {
  const session = connect(`http://${address}`);
  session.on("error", () => {});
  const stream = session.request({
    ":method": "POST",
    ":path": DeviceServiceDefinition.prefill.path,
    "content-type": "application/grpc",
    te: "trailers",
    ...(token ? { authorization: `Bearer ${token}` } : {}),
  });
  stream.on("error", () => {});
  const message = DeviceServiceDefinition.prefill.requestSerialize(toWirePrefillRequest(request));
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  stream.end(Buffer.concat([prefix, message]));
  stream.pause();
  let status = { code: -1, details: "" };
  const onHeaders = (headers: Record<string, unknown>) => {
    if (headers["grpc-status"] !== undefined) {
      status = {
        code: Number(headers["grpc-status"]),
        details: decodeURIComponent(String(headers["grpc-message"] ?? "")),
      };
    }
  };
  stream.on("response", onHeaders);
  stream.on("trailers", onHeaders);
  let bytes = 0;
  const closed = new Promise<void>((resolve) => stream.on("close", resolve));
  return {
    async readAll() {
      stream.on("data", (data: Buffer) => {
        bytes += data.length;
      });
      stream.resume();
      await closed;
      return { bytes, ...status };
    },
    close() {
      stream.close();
      session.close();
    },
  };
}
