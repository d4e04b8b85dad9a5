import { type ChannelOptions, Client, credentials as grpcCredentials } from "@grpc/grpc-js";
import { invalidField } from "@opal/core";
import type { GrpcConnectionOptions } from "./grpc-connection-options";

/**
 * A grpc-js client for `address` with the credentials and channel options of `options`; the
 * connection is made lazily on the first call. An address grpc-js cannot parse throws
 * INVALID_ARGUMENT INVALID_FIELD `address`.
 */
export function connectGrpc(address: string, options: GrpcConnectionOptions): Client {
  try {
    return new Client(address, toCredentials(options), toChannelOptions(options));
  } catch {
    throw invalidField(
      "address",
      `expected a gRPC target such as host:port, got ${JSON.stringify(address)}`,
    );
  }
}

function toCredentials({ credentials, tls }: GrpcConnectionOptions) {
  if (credentials) return credentials;
  if (!tls) return grpcCredentials.createInsecure();
  const pem = (value: string | Uint8Array | undefined) => (value ? Buffer.from(value) : null);
  return grpcCredentials.createSsl(pem(tls.caPem), pem(tls.privateKeyPem), pem(tls.certChainPem));
}

function toChannelOptions({ channel = {}, tls }: GrpcConnectionOptions): ChannelOptions {
  const settings: [string, number | string | undefined][] = [
    ["grpc.max_receive_message_length", channel.maxReceiveMessageBytes],
    ["grpc.max_send_message_length", channel.maxSendMessageBytes],
    ["grpc-node.flow_control_window", channel.flowControlWindowBytes],
    ["grpc.keepalive_time_ms", channel.keepaliveTimeMs],
    ["grpc.keepalive_timeout_ms", channel.keepaliveTimeoutMs],
    ["grpc.ssl_target_name_override", tls?.serverNameOverride || undefined],
  ];
  return Object.fromEntries(settings.filter(([, value]) => value !== undefined));
}
