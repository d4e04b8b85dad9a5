import type { ServiceInterceptor } from "@opal/protocol";
import type { Logger } from "pino";
import type { Authenticator } from "./caller-auth";
import type { DeviceCallContext } from "./device-call-context";
import type { DeviceCalls } from "./device-calls";
import { shuttingDownError } from "./device-calls";
import { recordCalls } from "./record-calls";
import type { ServerMetrics } from "./server-metrics";
import type { TenantLimiter } from "./tenant-limiter";

type Interceptor = ServiceInterceptor<DeviceCallContext>;

/** What {@link deviceInterceptors} needs. */
export interface DeviceInterceptorOptions {
  readonly authenticate: Authenticator;
  readonly limiter: TenantLimiter;
  readonly calls: DeviceCalls;
  /** Methods answered while shutting down (GetInfo, so clients can still identify the device). */
  readonly servedWhileShuttingDown: ReadonlySet<string>;
  /** Methods that are watches, ended as soon as shutdown begins (see `DeviceCalls.watches`). */
  readonly watches: ReadonlySet<string>;
  readonly metrics: ServerMetrics | undefined;
  readonly logger: Logger;
}

/**
 * The device service's interceptors: metrics and logging (`recordCalls`, outermost, so they see
 * every call), then admission in `PF-1` order: authenticate the caller and set its tenant (stage 1), refuse the call while
 * shutting down (stage 2), count it against the tenant's rate (stage 3), then register it so that
 * shutdown can end it. Malformed requests are refused after these, by the adapter.
 */
export function deviceInterceptors(options: DeviceInterceptorOptions): Interceptor[] {
  return [
    recordCalls(options.metrics, options.logger),
    authenticateCalls(options.authenticate),
    refuseWhileShuttingDown(options.calls, options.servedWhileShuttingDown),
    limitTenantRate(options.limiter),
    trackCalls(options.calls, options.watches),
  ];
}

function authenticateCalls(authenticate: Authenticator): Interceptor {
  return async (call, next) => {
    const { metadata, peer, peerCommonName } = call.context;
    call.context.tenant = await authenticate(metadata, {
      clientCertificateCommonName: peerCommonName,
      address: peer,
    });
    await next();
  };
}

function refuseWhileShuttingDown(calls: DeviceCalls, served: ReadonlySet<string>): Interceptor {
  return (call, next) => {
    if (calls.shuttingDown && !served.has(call.context.method)) throw shuttingDownError();
    return next();
  };
}

function limitTenantRate(limiter: TenantLimiter): Interceptor {
  return (call, next) => {
    limiter.admitRequest(call.context.tenant);
    return next();
  };
}

/** Ties the call's signal to the registry shutdown aborts: watches first, the rest after grace. */
function trackCalls(calls: DeviceCalls, watches: ReadonlySet<string>): Interceptor {
  return async (call, next) => {
    const registry = watches.has(call.context.method) ? calls.watches : calls.others;
    const tracked = registry.open({ signal: call.context.signal });
    call.context.signal = tracked.signal;
    try {
      await next();
    } finally {
      tracked.dispose();
    }
  };
}
