import { assertTimerMs, Code, OpalError } from "@opal/core";
import { assertDriverApiVersion, type DeviceCapabilities, type PrefillDriver } from "@opal/driver";
import type { GrpcListener, GrpcTransportSettings } from "@opal/protocol";
import pino from "pino";
import { DEFAULT_TENANT } from "./caller-auth";
import { createDeviceService } from "./create-device-service";
import { createDeviceCalls } from "./device-calls";
import { createDeviceHealth } from "./device-health";
import { DEVICE_SERVICE_NAME, listenDeviceServices } from "./listen-device-services";
import { createServerMetrics, type ServerMetrics } from "./server-metrics";
import type { DeviceServerOptions } from "./server-options";
import { shutdownDeviceServer } from "./shutdown-device-server";

/** A health check's probe of the driver must answer within this (ID-9), in ms. */
const HEALTH_PROBE_TIMEOUT_MS = 1_000;

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
   * driver. A `graceMs` that is not an integer from 0 to 2^31 - 1 rejects with INVALID_ARGUMENT.
   */
  shutdown(options?: { readonly graceMs?: number }): Promise<void>;
}

/**
 * Serves `driver` over gRPC: `opal.device.v1.DeviceService`, `grpc.health.v1.Health` and server
 * reflection (v1 and v1alpha), with authentication, per-tenant limits, explicit transport settings,
 * optional TLS and Prometheus metrics. Resolves once listening; rejects invalid limits and timers
 * (`shutdownGraceMs`, `healthPollIntervalMs`, `limits.*TimeoutMs`: integers up to 2^31 - 1) and
 * shared memory on a host without it with INVALID_ARGUMENT, and a port it cannot bind with
 * UNAVAILABLE.
 */
export async function createDeviceServer(
  driver: PrefillDriver,
  options: DeviceServerOptions = {},
): Promise<DeviceServer> {
  assertDriverApiVersion(driver);
  assertTimerMs("shutdownGraceMs", options.shutdownGraceMs, 0);
  assertTimerMs("healthPollIntervalMs", options.healthPollIntervalMs, 1);
  const logger =
    options.logger ?? pino({ level: process.env.OPAL_LOG_LEVEL ?? "warn" }, pino.destination(2));
  const capabilities = await driver.getCapabilities();
  const calls = createDeviceCalls();
  const metrics = options.metricsPort !== undefined ? createServerMetrics(driver) : undefined;
  const device = createDeviceService(driver, capabilities, options, { calls, metrics, logger });
  const health = createDeviceHealth(
    async () => (await driver.probe({ timeoutMs: HEALTH_PROBE_TIMEOUT_MS })) === "ready",
    {
      serviceNames: ["", DEVICE_SERVICE_NAME],
      pollIntervalMs: options.healthPollIntervalMs ?? 1_000,
    },
  );
  const host = options.host ?? "127.0.0.1";
  const unix = host.startsWith("unix:");
  const listener = await listenDeviceServices({
    address: unix ? host : `${formatHost(host)}:${options.port ?? 0}`,
    tls: options.tls,
    transport: transportSettings(options, capabilities),
    device,
    health,
    logger,
  });
  // Metrics are unauthenticated: on loopback unless the operator names another interface.
  const metricsHost = options.metricsHost ?? "127.0.0.1";
  const metricsPort = await serveMetrics(listener, metrics, metricsHost, options.metricsPort);
  const address = unix ? host : `${formatHost(host)}:${listener.port}`;
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
    port: listener.port,
    metricsUrl:
      metricsPort === undefined
        ? undefined
        : `http://${formatHost(metricsHost)}:${metricsPort}/metrics`,
    async shutdown({ graceMs = options.shutdownGraceMs ?? 5_000 } = {}) {
      assertTimerMs("graceMs", graceMs, 0);
      closing ??= shutdownDeviceServer(
        { address, listener, calls, health, metrics, logger },
        graceMs,
      );
      return closing;
    },
  };
}

/** The listener's transport: {@link DEFAULT_TRANSPORT} under `options.transport`. */
function transportSettings(
  options: DeviceServerOptions,
  capabilities: DeviceCapabilities,
): GrpcTransportSettings {
  const transport = { ...DEFAULT_TRANSPORT, ...options.transport };
  const maxMessageBytes = Math.max(
    4 * 1024 * 1024,
    options.transport?.maxMessageBytes ?? capabilities.maxMessageBytes,
  );
  return {
    maxReceiveMessageBytes: maxMessageBytes,
    maxSendMessageBytes: maxMessageBytes,
    flowControlWindowBytes: transport.flowControlWindowBytes,
    keepaliveTimeMs: transport.keepaliveTimeMs,
    // SEC-13: bound concurrent streams per connection and close connections idle for 10 minutes.
    maxConcurrentStreams: transport.maxConcurrentStreamsPerConnection,
    maxConnectionIdleMs: transport.maxConnectionIdleMs,
    keepaliveTimeoutMs: transport.keepaliveTimeoutMs,
    keepaliveMinPingIntervalMs: transport.keepaliveMinPingIntervalMs,
  };
}

/** Serves `/metrics` when asked; resolves with its port. A failure closes the gRPC listener. */
async function serveMetrics(
  listener: GrpcListener,
  metrics: ServerMetrics | undefined,
  host: string,
  port: number | undefined,
): Promise<number | undefined> {
  if (!metrics || port === undefined) return undefined;
  try {
    return await metrics.listen(host, port);
  } catch (error) {
    // Do not leave the gRPC port bound behind a server the caller never gets.
    listener.forceShutdown();
    throw new OpalError(
      Code.UNAVAILABLE,
      `cannot serve metrics on ${formatHost(host)}:${port}: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

function formatHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}
