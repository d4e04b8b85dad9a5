import { type ChannelOptions, Server, ServerCredentials } from "@grpc/grpc-js";
import { Code, OpalError } from "@opal/core";
import type { GrpcService } from "./create-service-implementation";
import { keepRepeatedHeaders } from "./keep-repeated-headers";

/** TLS of a {@link listenGrpc} listener. */
export interface GrpcListenerTls {
  readonly certChainPem: string | Uint8Array;
  readonly privateKeyPem: string | Uint8Array;
  /** CA bundle that verifies client certificates; default none (no client certificates). */
  readonly clientCaPem?: string | Uint8Array;
  /** Refuse connections without a verified client certificate; default false. */
  readonly requireClientCert?: boolean;
}

/** HTTP/2 and gRPC settings of a listener; each unset one keeps grpc-js' default. */
export interface GrpcTransportSettings {
  /** Largest message received, in bytes (grpc-js: 4 MiB). */
  readonly maxReceiveMessageBytes?: number;
  /** Largest message sent, in bytes (grpc-js: unlimited). */
  readonly maxSendMessageBytes?: number;
  /** HTTP/2 flow-control window, in bytes (grpc-js: 64 KiB). */
  readonly flowControlWindowBytes?: number;
  /** Interval between keepalive pings to each client, in ms (grpc-js: none). */
  readonly keepaliveTimeMs?: number;
  /**
   * How long a keepalive ping may go unacknowledged before the connection closes, in ms
   * (grpc-js: 20,000).
   */
  readonly keepaliveTimeoutMs?: number;
  /**
   * Shortest interval between a client's pings without data that is tolerated, in ms (sent as
   * `grpc.http2.min_ping_interval_without_data_ms`).
   */
  readonly keepaliveMinPingIntervalMs?: number;
  /** Concurrent streams per HTTP/2 connection, a count (grpc-js: unlimited). */
  readonly maxConcurrentStreams?: number;
  /** Connections idle this long are closed, in ms (grpc-js: never). */
  readonly maxConnectionIdleMs?: number;
}

/** Options of {@link listenGrpc}. */
export interface GrpcListenerOptions {
  /** `host:port` (port 0: any free port) or `unix:path`. */
  readonly address: string;
  readonly services: readonly GrpcService[];
  /** Default: plaintext. */
  readonly tls?: GrpcListenerTls;
  /** Default: grpc-js' defaults. */
  readonly transport?: GrpcTransportSettings;
  /**
   * Headers whose every value reaches the metadata (see `keepRepeatedHeaders`), e.g.
   * `["authorization"]` so that two tokens are seen and refused; default none.
   */
  readonly repeatedHeaders?: readonly string[];
}

/** A listening gRPC server. */
export interface GrpcListener {
  /** The bound TCP port; 0 on a unix socket. */
  readonly port: number;
  /** Stops accepting calls; resolves once every open call has ended. */
  shutdown(): Promise<void>;
  /** Ends every open call and connection now. */
  forceShutdown(): void;
}

/**
 * Serves `services` on `address`: the one place a grpc-js `Server` is made. Resolves once
 * listening; an address that cannot be bound rejects UNAVAILABLE "cannot listen on …".
 */
export async function listenGrpc(options: GrpcListenerOptions): Promise<GrpcListener> {
  const server = new Server(channelOptions(options.transport ?? {}));
  for (const { definition, implementation } of options.services) {
    server.addService(definition, implementation);
  }
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.address, credentials(options.tls), (error, port) => {
      if (!error) return resolve(port);
      reject(
        new OpalError(Code.UNAVAILABLE, `cannot listen on ${options.address}: ${error.message}`, {
          cause: error,
        }),
      );
    });
  });
  if (options.repeatedHeaders) {
    try {
      keepRepeatedHeaders(server, options.repeatedHeaders);
    } catch (error) {
      server.forceShutdown();
      throw error;
    }
  }
  return {
    port: options.address.startsWith("unix:") ? 0 : bound,
    shutdown: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
    forceShutdown: () => server.forceShutdown(),
  };
}

function channelOptions(transport: GrpcTransportSettings): ChannelOptions {
  const settings: Record<string, number | undefined> = {
    "grpc.max_receive_message_length": transport.maxReceiveMessageBytes,
    "grpc.max_send_message_length": transport.maxSendMessageBytes,
    "grpc-node.flow_control_window": transport.flowControlWindowBytes,
    "grpc.keepalive_time_ms": transport.keepaliveTimeMs,
    "grpc.max_concurrent_streams": transport.maxConcurrentStreams,
    "grpc.max_connection_idle_ms": transport.maxConnectionIdleMs,
    "grpc.keepalive_timeout_ms": transport.keepaliveTimeoutMs,
    "grpc.http2.min_ping_interval_without_data_ms": transport.keepaliveMinPingIntervalMs,
  };
  return Object.fromEntries(Object.entries(settings).filter(([, value]) => value !== undefined));
}

function credentials(tls: GrpcListenerTls | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(
    tls.clientCaPem ? Buffer.from(tls.clientCaPem) : null,
    [{ cert_chain: Buffer.from(tls.certChainPem), private_key: Buffer.from(tls.privateKeyPem) }],
    tls.requireClientCert ?? false,
  );
}
