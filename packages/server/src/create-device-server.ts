import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { type ChannelOptions, Server, ServerCredentials } from "@grpc/grpc-js";
import { loadFileDescriptorSetFromBuffer, loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { Code, OpalError, Reason } from "@opal/core";
import { assertDriverApiVersion, createDeviceSlots, type PrefillDriver } from "@opal/driver";
import {
  DeviceServiceDefinition,
  encodeChunkResponse,
  FILE_DESCRIPTOR_SET_BASE64,
  hasSharedMemory,
  SHARED_MEMORY_DIRECTORY,
  tolerantDeserializer,
} from "@opal/protocol";
import { protoPath as healthProtoPath } from "grpc-health-check";
import pino from "pino";
import { type ScopeRegistry, shuttingDownError } from "./call-scope";
import { createAuthenticator, DEFAULT_TENANT } from "./caller-auth";
import { createDeviceHandlers } from "./device-handlers";
import { createDeviceHealth } from "./device-health";
import { keepRepeatedHeaders } from "./keep-repeated-headers";
import { createServerMetrics } from "./server-metrics";
import type { DeviceServerOptions } from "./server-options";
import { createTenantLimiter } from "./tenant-limiter";
import { createUploadLimiter } from "./upload-limiter";

/**
 * The device service as served: requests that do not parse reach the handler (which answers
 * INVALID_ARGUMENT with ErrorInfo, ERR-2) instead of failing inside grpc-js, and the KV streams' hot
 * path is encoded by hand: a response carrying only a chunk is one allocation and one copy
 * (`encodeChunkResponse`); others use protobufjs.
 */
const STREAMING_DEFINITION = Object.fromEntries(
  Object.entries(DeviceServiceDefinition).map(([name, method]) => [
    name,
    {
      ...method,
      requestDeserialize: tolerantDeserializer(method.originalName, method.requestDeserialize),
      ...(name === "prefill" || name === "fetchKv"
        ? {
            responseSerialize: (message: Parameters<typeof method.responseSerialize>[0]) =>
              encodeChunkResponse(message as never) ?? method.responseSerialize(message as never),
          }
        : {}),
    },
  ]),
) as unknown as typeof DeviceServiceDefinition;

/** The health-checked name of the device service. */
export const DEVICE_SERVICE_NAME = "opal.device.v1.DeviceService";

/** Services a device server serves and lists in reflection. */
const SERVED_SERVICES = [
  DEVICE_SERVICE_NAME,
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
] as const;

/** A health check's probe of the driver must answer within this (ID-9), in ms. */
const HEALTH_PROBE_TIMEOUT_MS = 1_000;

/** After a forced shutdown aborts the open calls, how long they get to send their status, in ms. */
const ABORTED_CALLS_GRACE_MS = 250;

/** Default of `limits.streamStallTimeoutMs`, in ms. */
const DEFAULT_STREAM_STALL_TIMEOUT_MS = 30_000;
/** Default of `limits.maxConcurrentUploads`. */
const DEFAULT_CONCURRENT_UPLOADS = 2;
/** Default of `limits.uploadIdleTimeoutMs`, in ms. */
const DEFAULT_UPLOAD_IDLE_TIMEOUT_MS = 30_000;

/** Defaults of {@link DeviceServerOptions.transport}. */
export const DEFAULT_TRANSPORT = {
  flowControlWindowBytes: 16 * 1024 * 1024,
  keepaliveMinPingIntervalMs: 10_000,
  keepaliveTimeMs: 60_000,
  keepaliveTimeoutMs: 20_000,
  maxConcurrentStreamsPerConnection: 256,
  maxConnectionIdleMs: 600_000,
} as const;

/** A running device server. */
export interface DeviceServer {
  /** `host:port` the server listens on, or the `unix:` address it was given. */
  readonly address: string;
  /** The bound TCP port; 0 on a unix socket. */
  readonly port: number;
  /** `http://host:port/metrics` when metrics are served (`metricsHost`, default 127.0.0.1). */
  readonly metricsUrl: string | undefined;
  /**
   * Graceful shutdown: health turns NOT_SERVING, new calls fail with UNAVAILABLE SHUTTING_DOWN,
   * watches (`Health.Watch` after sending NOT_SERVING, `WatchTelemetry`) end at once with UNAVAILABLE
   * SHUTTING_DOWN (TM-4), running calls get `graceMs` (default: the `shutdownGraceMs` option) to
   * finish, then are cancelled with UNAVAILABLE SHUTTING_DOWN. Idempotent. Does not close the
   * driver.
   */
  shutdown(options?: { readonly graceMs?: number }): Promise<void>;
}

/**
 * Serves `driver` over gRPC: `opal.device.v1.DeviceService`, `grpc.health.v1.Health` and server
 * reflection (v1 and v1alpha), with authentication, per-tenant limits, explicit transport settings,
 * optional TLS and Prometheus metrics. Resolves once listening; rejects invalid limits and
 * shared memory on a host without it with INVALID_ARGUMENT, and a port it cannot bind with
 * UNAVAILABLE.
 */
export async function createDeviceServer(
  driver: PrefillDriver,
  options: DeviceServerOptions = {},
): Promise<DeviceServer> {
  assertDriverApiVersion(driver);
  const logger =
    options.logger ?? pino({ level: process.env.OPAL_LOG_LEVEL ?? "warn" }, pino.destination(2));
  const capabilities = await driver.getCapabilities();
  const transport = { ...DEFAULT_TRANSPORT, ...options.transport };
  const maxMessageBytes = Math.max(
    4 * 1024 * 1024,
    options.transport?.maxMessageBytes ?? capabilities.maxMessageBytes,
  );
  const channelOptions: ChannelOptions = {
    "grpc.max_receive_message_length": maxMessageBytes,
    "grpc.max_send_message_length": maxMessageBytes,
    "grpc-node.flow_control_window": transport.flowControlWindowBytes,
    "grpc.keepalive_time_ms": transport.keepaliveTimeMs,
    // SEC-13: bound concurrent streams per connection and close connections idle for 10 minutes.
    "grpc.max_concurrent_streams": transport.maxConcurrentStreamsPerConnection,
    "grpc.max_connection_idle_ms": transport.maxConnectionIdleMs,
    "grpc.keepalive_timeout_ms": transport.keepaliveTimeoutMs,
    "grpc.http2.min_ping_interval_without_data_ms": transport.keepaliveMinPingIntervalMs,
  };
  const server = new Server(channelOptions);
  const registry: ScopeRegistry = {
    authenticate: createAuthenticator(options.auth, { tls: options.tls !== undefined }),
    limiter: createTenantLimiter(options.limits),
    open: new Set(),
    watches: new Set(),
    shuttingDown: false,
  };
  const metrics = options.metricsPort !== undefined ? createServerMetrics(driver) : undefined;
  server.addService(
    STREAMING_DEFINITION,
    createDeviceHandlers({
      driver,
      capabilities,
      registry,
      metrics,
      logger,
      hostPush: (options.push ?? true) && !capabilities.features.push,
      running: new Map(),
      pushTargets: options.pushTargets ? new Set(options.pushTargets) : undefined,
      sharedMemory: sharedMemoryEnabled(options.sharedMemory),
      slots: driver.queuesPrefills
        ? undefined
        : createDeviceSlots(capabilities.maxConcurrentPrefills, capabilities.maxQueuedPrefills),
      stallTimeoutMs: options.limits?.streamStallTimeoutMs ?? DEFAULT_STREAM_STALL_TIMEOUT_MS,
      uploads: createUploadLimiter(
        options.limits?.maxConcurrentUploads ?? DEFAULT_CONCURRENT_UPLOADS,
        options.limits?.maxUploadBytesInFlight ?? capabilities.maxModelBytes,
      ),
      uploadIdleTimeoutMs: options.limits?.uploadIdleTimeoutMs ?? DEFAULT_UPLOAD_IDLE_TIMEOUT_MS,
    }),
  );
  const health = createDeviceHealth(
    async () => (await driver.probe({ timeoutMs: HEALTH_PROBE_TIMEOUT_MS })) === "ready",
    {
      serviceNames: ["", DEVICE_SERVICE_NAME],
      pollIntervalMs: options.healthPollIntervalMs ?? 1_000,
    },
  );
  health.addToServer(server);
  const reflectionProtos = reflectionProtoPaths();
  if (reflectionProtos.length === 0) {
    logger.warn("reflection protos not found: reflection will not list itself");
  }
  // List exactly the services this server serves (GEN-9): the protocol's descriptor set also holds
  // KvReceiverService, which a device does not serve.
  new ReflectionService(
    {
      ...loadFileDescriptorSetFromBuffer(Buffer.from(FILE_DESCRIPTOR_SET_BASE64, "base64")),
      ...loadSync(healthProtoPath),
      ...(reflectionProtos.length > 0 ? loadSync(reflectionProtos) : {}),
    },
    { services: [...SERVED_SERVICES] },
  ).addToServer(server);

  const host = options.host ?? "127.0.0.1";
  const unix = host.startsWith("unix:");
  // Metrics are unauthenticated: on loopback unless the operator names another interface.
  const metricsHost = options.metricsHost ?? "127.0.0.1";
  const bound = await bind(
    server,
    unix ? host : `${formatHost(host)}:${options.port ?? 0}`,
    credentials(options),
  );
  const port = unix ? 0 : bound;
  // Two `authorization` headers are refused by the authenticator, which must see both.
  try {
    keepRepeatedHeaders(server, ["authorization"]);
  } catch (error) {
    server.forceShutdown();
    throw error;
  }
  let metricsPort: number | undefined;
  try {
    metricsPort = metrics ? await metrics.listen(metricsHost, options.metricsPort!) : undefined;
  } catch (error) {
    // Do not leave the gRPC port bound behind a server the caller never gets.
    server.forceShutdown();
    throw new OpalError(
      Code.UNAVAILABLE,
      `cannot serve metrics on ${formatHost(metricsHost)}:${options.metricsPort}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  const address = unix ? host : `${formatHost(host)}:${port}`;
  // SEC-5: a device that does not authenticate says so at start-up.
  logger.info(
    { address, metricsPort, authenticated: options.auth !== undefined },
    options.auth
      ? "device server listening"
      : `device server listening without authentication: every caller is tenant "${DEFAULT_TENANT}"`,
  );

  let closing: Promise<void> | undefined;
  return {
    address,
    port,
    metricsUrl:
      metricsPort === undefined
        ? undefined
        : `http://${formatHost(metricsHost)}:${metricsPort}/metrics`,
    shutdown({ graceMs = options.shutdownGraceMs ?? 5_000 } = {}) {
      closing ??= (async () => {
        registry.shuttingDown = true;
        const reason = shuttingDownError();
        // Watches never end by themselves: they end now, and only calls that do end are drained.
        health.setShuttingDown(reason);
        for (const controller of registry.watches) controller.abort(reason);
        const graceful = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
        let timer: NodeJS.Timeout | undefined;
        const expired = new Promise<"expired">((resolve) => {
          timer = setTimeout(() => resolve("expired"), graceMs);
        });
        if ((await Promise.race([graceful, expired])) === "expired") {
          for (const controller of registry.open) controller.abort(reason);
          // Let the aborted calls send their status, but do not wait on a driver that ignores
          // its signal.
          await Promise.race([graceful, delay(ABORTED_CALLS_GRACE_MS)]);
          server.forceShutdown();
        }
        clearTimeout(timer);
        await metrics?.close();
        logger.info({ address }, "device server stopped");
      })();
      return closing;
    },
  };
}

/** The reflection protos shipped with `@grpc/reflection`, or none when they cannot be found. */
function reflectionProtoPaths(): string[] {
  // ESM resolves through `import.meta.url`; the CommonJS build (where that is empty) has `require`.
  const resolvers = [() => createRequire(import.meta.url), () => require];
  for (const resolver of resolvers) {
    try {
      const root = join(
        dirname(resolver().resolve("@grpc/reflection/package.json")),
        "build",
        "proto",
      );
      const paths = ["v1", "v1alpha"]
        .map((version) => join(root, "grpc", "reflection", version, "reflection.proto"))
        .filter((path) => existsSync(path));
      if (paths.length > 0) return paths;
    } catch {
      // try the next way of resolving
    }
  }
  return [];
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function credentials(options: DeviceServerOptions): ServerCredentials {
  const tls = options.tls;
  if (!tls) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(
    tls.clientCaPem ? Buffer.from(tls.clientCaPem) : null,
    [{ cert_chain: Buffer.from(tls.certChainPem), private_key: Buffer.from(tls.privateKeyPem) }],
    tls.requireClientCert ?? false,
  );
}

function bind(server: Server, address: string, creds: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, creds, (error, port) => {
      if (error) {
        reject(
          new OpalError(Code.UNAVAILABLE, `cannot listen on ${address}: ${error.message}`, {
            cause: error,
          }),
        );
      } else resolve(port);
    });
  });
}

function formatHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** Whether the shared-memory data plane is on; asking for it where it cannot work is an error. */
function sharedMemoryEnabled(wanted: boolean | undefined): boolean {
  if (!wanted) return false;
  if (!hasSharedMemory()) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `sharedMemory: needs ${SHARED_MEMORY_DIRECTORY} (Linux POSIX shared memory), which this host lacks`,
      { reason: Reason.INVALID_FIELD },
    );
  }
  return true;
}
