import type { Logger } from "pino";

/** TLS settings. With `clientCaPem` and `requireClientCert`, the server requires mutual TLS. */
export interface ServerTlsOptions {
  /** PEM certificate chain of the server. */
  readonly certChainPem: string | Uint8Array;
  /** PEM private key of the server. */
  readonly privateKeyPem: string | Uint8Array;
  /** PEM CA bundle that client certificates must chain to (mutual TLS). */
  readonly clientCaPem?: string | Uint8Array;
  /** Reject clients without a certificate signed by `clientCaPem`; default false. */
  readonly requireClientCert?: boolean;
}

/** Who is calling: what {@link ServerAuthOptions.authenticate} sees. */
export interface CallerCredentials {
  /** The bearer token from `authorization: Bearer <token>`, if any. */
  readonly token: string | undefined;
  /** Subject common name of a verified client certificate (mutual TLS), if any. */
  readonly clientCertificateCommonName: string | undefined;
}

/** Settings shared by both forms of {@link ServerAuthOptions}. */
export interface ServerAuthCommonOptions {
  /**
   * Accept bearer tokens over plaintext connections from non-loopback peers. Default false: without
   * TLS, only loopback peers may send a token, others fail with UNAUTHENTICATED TOKEN_INVALID
   * (SEC-2: a token sent in clear is a token given away). No effect with TLS.
   */
  readonly allowPlaintextTokens?: boolean;
}

/**
 * Authentication: maps a caller to a tenant. Either a static token table or a function. A call that
 * fails authentication ends with UNAUTHENTICATED (reason TOKEN_INVALID). Health and reflection are
 * served without authentication.
 */
export type ServerAuthOptions = ServerAuthCommonOptions &
  (
    | { readonly tokens: Readonly<Record<string, string>> }
    | { readonly authenticate: (credentials: CallerCredentials) => string | Promise<string> }
  );

/**
 * Per-tenant limits; each rejection carries its protocol reason and a RetryInfo. `createDeviceServer`
 * rejects an invalid setting with INVALID_ARGUMENT INVALID_FIELD.
 */
export interface ServerLimits {
  /**
   * Prefills (and fetches) a tenant may run at once, an integer >= 1; default unlimited (the
   * device's own queue applies). Checked after the request's own checks (PF-1 stage 6); a retry
   * that supersedes a running call (PF-7) takes over its slot.
   */
  readonly maxConcurrentPrefillsPerTenant?: number;
  /** Sustained requests per second a tenant may make, all RPCs; default (or 0) unlimited. */
  readonly requestsPerSecondPerTenant?: number;
  /** Burst above the sustained rate, at least 1; default one second of rate, at least 1 request. */
  readonly burstRequests?: number;
  /**
   * How long a Prefill or FetchKv stream may wait for its caller to read, in ms, an integer >= 1;
   * default 30,000. A caller that stops reading fills its HTTP/2 window and the server's write
   * buffer; when the buffer has not drained for this long the call ends with DEADLINE_EXCEEDED
   * `DEADLINE_EXCEEDED` (message "stalled: …") and frees its device and tenant slots, so streams
   * that are never read cannot hold the device. A retained cache stays fetchable (FetchKv). A
   * host push whose receiver reads nothing for this long fails UNAVAILABLE
   * `PUSH_TARGET_UNREACHABLE` ("push target stalled").
   */
  readonly streamStallTimeoutMs?: number;
  /**
   * LoadModel uploads (weights, not `device_local_ref`) the device takes at once, over all
   * tenants, an integer >= 1; default 2. More fail RESOURCE_EXHAUSTED `DEVICE_BUSY` with RetryInfo
   * (models.md `MD-20`).
   */
  readonly maxConcurrentUploads?: number;
  /**
   * Declared weight bytes (`weights_byte_length`) of the uploads in progress together, an integer
   * >= 1; default the driver's `maxModelBytes`. Drivers may buffer an upload whole (the mock does),
   * so this bounds that memory: an upload that does not fit beside the others fails
   * RESOURCE_EXHAUSTED `DEVICE_BUSY` with RetryInfo, one larger than the whole budget without.
   */
  readonly maxUploadBytesInFlight?: number;
  /**
   * How long an upload may send no message, in ms, an integer >= 1; default 30,000. Then it fails
   * DEADLINE_EXCEEDED `DEADLINE_EXCEEDED` ("upload idle") and frees its slot and bytes.
   */
  readonly uploadIdleTimeoutMs?: number;
}

/**
 * HTTP/2 and gRPC transport settings, set explicitly because grpc-js's defaults (64 KiB window,
 * 4 MiB receive limit) cap KV streaming well below what the transport can carry.
 */
export interface ServerTransportOptions {
  /** HTTP/2 flow-control window in bytes; default 16 MiB. */
  readonly flowControlWindowBytes?: number;
  /** Largest message received or sent in bytes; default the driver's `maxMessageBytes` (at least 4 MiB). */
  readonly maxMessageBytes?: number;
  /**
   * Shortest interval between client keepalive pings the server permits, in ms; default 10,000
   * (TR-4). Passed to the transport as `grpc.http2.min_ping_interval_without_data_ms`; grpc-js
   * 1.14 enforces no ping policy, so in practice no client is cut off for pinging.
   */
  readonly keepaliveMinPingIntervalMs?: number;
  /** Interval of the server's own keepalive pings, in ms; default 60,000 (TR-5). */
  readonly keepaliveTimeMs?: number;
  /** Time to wait for a keepalive acknowledgement, in ms; default 20,000 (TR-5). */
  readonly keepaliveTimeoutMs?: number;
}

/** Options of `createDeviceServer`; every field is optional. */
export interface DeviceServerOptions {
  /**
   * Interface to bind; default "127.0.0.1". `unix:/path` listens on a unix socket instead (clients
   * dial the same address; its callers count as on this host, as for `sharedMemory`); `port` is
   * then ignored and `DeviceServer.port` is 0.
   */
  readonly host?: string;
  /** Port to bind; default 0 (any free port, see `DeviceServer.port`). */
  readonly port?: number;
  /** TLS; default plaintext. */
  readonly tls?: ServerTlsOptions;
  /** Authentication; default none (every caller is tenant "default"). */
  readonly auth?: ServerAuthOptions;
  readonly limits?: ServerLimits;
  readonly transport?: ServerTransportOptions;
  /** How long `shutdown` waits for calls to finish before cancelling them, in ms; default 5,000. */
  readonly shutdownGraceMs?: number;
  /**
   * How often an open `grpc.health.v1.Health/Watch` stream re-reads the driver's `probe()`, in ms;
   * default 1,000. `Check` probes on every call: health is SERVING exactly when the probe answers
   * "ready" within 1 s (ID-12), and NOT_SERVING once shutdown begins.
   */
  readonly healthPollIntervalMs?: number;
  /** Serve Prometheus metrics over HTTP at `/metrics` on this port (0 = any free port); default off. */
  readonly metricsPort?: number;
  /**
   * Interface the metrics endpoint binds; default "127.0.0.1", whatever `host` is. Metrics are
   * served without authentication and name methods, tenants' call counts and device load, so they
   * stay on loopback unless the operator exposes them (e.g. to a scraper on a private network).
   */
  readonly metricsHost?: string;
  /**
   * Push handoff for drivers that do not push themselves: the host streams the driver's chunks to
   * the request's KvReceiver and declares `features.push`; default true.
   */
  readonly push?: boolean;
  /**
   * Operator allow-list of push targets (`host:port`, as requests name them): a prefill whose
   * `push_target.address` is not listed fails PERMISSION_DENIED before `accepted` (PS-1), whoever
   * pushes (the host or the driver). Default: only the caller's own address, i.e. a target whose
   * host is the caller's IP address, or for a caller on loopback a loopback target (`localhost`,
   * `127.0.0.0/8`, `[::1]`); never a `unix:` path or a name to resolve, and nothing for callers on
   * a unix socket. Every refused target gets the same PERMISSION_DENIED message, and every push
   * that fails without an answer from an OPAL KvReceiver (closed port, not HTTP/2, another
   * service) the same UNAVAILABLE `PUSH_TARGET_UNREACHABLE` message, so callers cannot use the
   * device to map the network (PS-17).
   */
  readonly pushTargets?: readonly string[];
  /**
   * Offer the same-host shared-memory data plane (PF-43, Linux): a caller on this host may name a
   * region in `/dev/shm` and the host writes the KV bytes there instead of into the gRPC stream,
   * sending only references (PF-42); GetCapabilities then lists it in `data_planes`. The host
   * serves it only to callers on this host (loopback or unix socket) and opens only regions named
   * `/opal-…` that already exist, are regular files and belong to its own user. Any authenticated
   * local caller can have the device write into such a file by name, so enable it only where every
   * caller is trusted with this user's shared memory (security.md). Default false.
   */
  readonly sharedMemory?: boolean;
  /** A pino logger; default a pino logger at level `OPAL_LOG_LEVEL` or "warn", to stderr. */
  readonly logger?: Logger;
}
