/**
 * Hosts any `PrefillDriver` over gRPC, correctly: the device protocol plus health and reflection,
 * rich error statuses, cancellation and deadlines as the driver's `AbortSignal`, write
 * back-pressure, explicit transport settings, TLS and mutual TLS, bearer tokens mapped to tenants,
 * per-tenant limits, Prometheus metrics and graceful shutdown.
 *
 * @packageDocumentation
 */

export { DEFAULT_TENANT } from "./caller-auth";
export type { DeviceServer } from "./create-device-server";
export { createDeviceServer, DEFAULT_TRANSPORT } from "./create-device-server";
export { DEVICE_SERVICE_NAME } from "./listen-device-services";
export type {
  CallerCredentials,
  DeviceServerOptions,
  ServerAuthCommonOptions,
  ServerAuthOptions,
  ServerLimits,
  ServerTlsOptions,
  ServerTransportOptions,
} from "./server-options";
