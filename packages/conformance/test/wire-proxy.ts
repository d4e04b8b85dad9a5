import {
  Client,
  credentials,
  Metadata,
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type ServiceError,
  type sendUnaryData,
} from "@grpc/grpc-js";
import { DeviceServiceDefinition } from "@opal/protocol";

/** How a call ended with an error, as a proxy forwards it. */
export interface ProxyStatus {
  readonly code: number;
  readonly details: string;
  readonly metadata: Metadata;
}

/** What a proxy changes on the way through; every hook is optional (default: forward as is). */
export interface WireProxyHooks {
  /**
   * Rewrites the request bytes of a call to `method` (the DeviceService method's camelCase name,
   * e.g. `prefill`); `onEnd` runs when the call ends, however it ends.
   */
  request?(method: string, bytes: Buffer): { readonly bytes: Buffer; readonly onEnd?: () => void };
  /**
   * Rewrites each response message of a server-streaming call to `method` (a device that encodes a
   * field wrongly); `request` is the request as the device received it.
   */
  response?(method: string, message: Buffer, request: Buffer): Buffer;
  /** Rewrites the error status the device ended a call with. */
  status?(status: ProxyStatus): ProxyStatus;
}

/** A DeviceService proxy listening on a loopback port. */
export interface WireProxy {
  /** `127.0.0.1:port`. */
  readonly address: string;
  close(): Promise<void>;
}

const bytesOf = (b: Buffer) => b;

/**
 * Serves `opal.device.v1.DeviceService` on a free loopback port and forwards every call, bytes
 * unchanged unless a hook says otherwise, to `upstream`: the bearer token and the deadline go with
 * it, cancellation reaches the device, and a server stream's back-pressure is passed on (the
 * proxy stops reading from the device while its caller does not read), so a conforming device
 * behind it still conforms. Health and reflection are not proxied.
 */
export async function serveWireProxy(
  upstream: string,
  hooks: WireProxyHooks = {},
): Promise<WireProxy> {
  const client = new Client(upstream, credentials.createInsecure(), {
    "grpc.max_receive_message_length": -1,
    "grpc.max_send_message_length": -1,
  });
  const definition: Record<string, ServiceDefinition[string]> = {};
  const handlers: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(DeviceServiceDefinition)) {
    definition[name] = {
      path: method.path,
      requestStream: method.requestStream,
      responseStream: method.responseStream,
      requestSerialize: bytesOf,
      requestDeserialize: bytesOf,
      responseSerialize: bytesOf,
      responseDeserialize: bytesOf,
    };
    handlers[name] = method.requestStream
      ? clientStream(client, method.path, hooks)
      : method.responseStream
        ? serverStream(client, name, method.path, hooks)
        : unary(client, name, method.path, hooks);
  }
  const server = new Server({
    "grpc.max_receive_message_length": -1,
    "grpc.max_send_message_length": -1,
  });
  server.addService(definition as ServiceDefinition, handlers as never);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  return {
    address: `127.0.0.1:${port}`,
    async close() {
      server.forceShutdown();
      client.close();
    },
  };
}

type AnyCall =
  | ServerUnaryCall<Buffer, Buffer>
  | ServerWritableStream<Buffer, Buffer>
  | ServerReadableStream<Buffer, Buffer>
  | ServerDuplexStream<Buffer, Buffer>;

/** The caller's bearer token, the only metadata the device needs. */
function forwardedMetadata(call: AnyCall): Metadata {
  const metadata = new Metadata();
  for (const value of call.metadata.get("authorization")) metadata.add("authorization", value);
  return metadata;
}

function toStatus(error: ServiceError, hooks: WireProxyHooks): ProxyStatus {
  const status = { code: error.code, details: error.details, metadata: error.metadata };
  return hooks.status ? hooks.status(status) : status;
}

function unary(client: Client, name: string, path: string, hooks: WireProxyHooks) {
  return (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
    const { bytes, onEnd } = hooks.request?.(name, call.request) ?? { bytes: call.request };
    client.makeUnaryRequest(
      path,
      bytesOf,
      bytesOf,
      bytes,
      forwardedMetadata(call),
      { deadline: call.getDeadline() },
      (error, response) => {
        onEnd?.();
        if (error) callback(toStatus(error, hooks));
        else callback(null, response);
      },
    );
  };
}

function serverStream(client: Client, name: string, path: string, hooks: WireProxyHooks) {
  return (call: ServerWritableStream<Buffer, Buffer>) => {
    const { bytes, onEnd } = hooks.request?.(name, call.request) ?? { bytes: call.request };
    const upstream = client.makeServerStreamRequest(
      path,
      bytesOf,
      bytesOf,
      bytes,
      forwardedMetadata(call),
      { deadline: call.getDeadline() },
    );
    let ended = false;
    const end = () => {
      if (ended) return false;
      ended = true;
      onEnd?.();
      return true;
    };
    call.on("cancelled", () => {
      if (end()) upstream.cancel();
    });
    upstream.on("data", (received: Buffer) => {
      const message = hooks.response ? hooks.response(name, received, bytes) : received;
      if (!call.write(message)) {
        upstream.pause();
        call.once("drain", () => upstream.resume());
      }
    });
    upstream.on("error", (error: ServiceError) => {
      if (end()) call.emit("error", toStatus(error, hooks));
    });
    upstream.on("end", () => {
      // grpc-js ends the stream after an error status too; only an OK end closes the call.
      setImmediate(() => {
        if (end()) call.end();
      });
    });
  };
}

function clientStream(client: Client, path: string, hooks: WireProxyHooks) {
  return (call: ServerReadableStream<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
    const upstream = client.makeClientStreamRequest(
      path,
      bytesOf,
      bytesOf,
      forwardedMetadata(call),
      { deadline: call.getDeadline() },
      (error, response) => {
        if (error) callback(toStatus(error, hooks));
        else callback(null, response);
      },
    );
    call.on("data", (message: Buffer) => upstream.write(message));
    call.on("end", () => upstream.end());
    call.on("cancelled", () => upstream.cancel());
  };
}
