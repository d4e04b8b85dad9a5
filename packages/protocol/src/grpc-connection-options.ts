import type { ChannelCredentials } from "@grpc/grpc-js";

/** TLS of a gRPC connection (PEM text or bytes); with `certChainPem` and `privateKeyPem`, mutual TLS. */
export interface GrpcTlsOptions {
  /** CA bundle that verifies the server; default the system roots. */
  readonly caPem?: string | Uint8Array;
  /** Client certificate chain, for mutual TLS. */
  readonly certChainPem?: string | Uint8Array;
  /** Client private key, for mutual TLS. */
  readonly privateKeyPem?: string | Uint8Array;
  /** Expected server name when it differs from the target host (e.g. "localhost" in tests). */
  readonly serverNameOverride?: string;
}

/** HTTP/2 and gRPC channel settings; each one left unset keeps grpc-js's default. */
export interface GrpcChannelSettings {
  /** Largest message received, in bytes (grpc-js: 4 MiB). */
  readonly maxReceiveMessageBytes?: number;
  /** Largest message sent, in bytes (grpc-js: unlimited). */
  readonly maxSendMessageBytes?: number;
  /** HTTP/2 flow-control window, in bytes (grpc-js: 64 KiB). */
  readonly flowControlWindowBytes?: number;
  /** Keepalive ping interval, in ms (grpc-js: none). */
  readonly keepaliveTimeMs?: number;
  /** Keepalive acknowledgement timeout, in ms (grpc-js: 20,000). */
  readonly keepaliveTimeoutMs?: number;
}

/** How a client connects: every connection setting of every OPAL gRPC client is one of these. */
export interface GrpcConnectionOptions {
  /** TLS; default plaintext. Ignored when `credentials` is given. */
  readonly tls?: GrpcTlsOptions;
  /** Ready-made grpc-js channel credentials, for callers that hold them already (tests). */
  readonly credentials?: ChannelCredentials;
  /** Bearer token sent as `authorization: Bearer <token>` on every call; never logged. */
  readonly token?: string;
  /** HTTP/2 and gRPC settings (sizes in bytes, times in ms); default grpc-js' own. */
  readonly channel?: GrpcChannelSettings;
}
