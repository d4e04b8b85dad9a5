import { Code, OpalError, sleep, toAbortError, untilAborted } from "@opal/core";
import {
  grpc,
  type HealthV1Definition,
  type ServiceContext,
  type ServiceHandlers,
} from "@opal/protocol";

const { ServingStatus } = grpc.health.v1.HealthCheckResponse;
type ServingStatus = grpc.health.v1.HealthCheckResponse.ServingStatus;
type HealthResponse = { status: ServingStatus };

/**
 * `grpc.health.v1.Health` of a device server, following the driver's `probe()` (GEN-9, ID-12):
 * `SERVING` exactly when the probe answers "ready" within its timeout, `NOT_SERVING` otherwise and
 * for good once shutdown begins. `Check` and `List` probe on each call; a `Watch` stream probes
 * every poll interval and sends each transition.
 */
export interface DeviceHealth {
  /** The handlers of `grpc.health.v1.Health` (Check, Watch, List). */
  readonly handlers: ServiceHandlers<typeof HealthV1Definition>;
  /**
   * Turns NOT_SERVING for good: every open `Watch` stream, and every one opened later, gets
   * NOT_SERVING (unless it last sent that) and ends with `reason`, so watchers never hold a
   * graceful shutdown. Idempotent.
   */
  setShuttingDown(reason: OpalError): void;
}

/** Options of {@link createDeviceHealth}. */
export interface DeviceHealthOptions {
  /** Health service names answered; others are NOT_FOUND (Check) or SERVICE_UNKNOWN (Watch). */
  readonly serviceNames: readonly string[];
  /** Interval at which a `Watch` stream re-probes, in ms. */
  readonly pollIntervalMs: number;
}

/** Creates the health service over `probe`, which resolves true when the device is ready. */
export function createDeviceHealth(
  probe: () => Promise<boolean>,
  options: DeviceHealthOptions,
): DeviceHealth {
  const known = new Set(options.serviceNames);
  const shutdown = new AbortController();
  const current = async (): Promise<ServingStatus> => {
    if (shutdown.signal.aborted) return ServingStatus.NOT_SERVING;
    const ready = await probe().catch(() => false);
    return ready && !shutdown.signal.aborted ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  };
  return {
    handlers: {
      check: async ({ service }) => {
        if (!known.has(service))
          throw new OpalError(Code.NOT_FOUND, `unknown service ${JSON.stringify(service)}`);
        return { status: await current() };
      },
      list: async () => {
        const status = await current();
        return { statuses: Object.fromEntries([...known].map((name) => [name, { status }])) };
      },
      watch: (request, call) =>
        watchHealth(known.has(request.service), current, {
          call,
          shutdown: shutdown.signal,
          pollIntervalMs: options.pollIntervalMs,
        }),
    },
    setShuttingDown(reason) {
      if (!shutdown.signal.aborted) shutdown.abort(reason);
    },
  };
}

/**
 * One `Watch` stream: SERVICE_UNKNOWN once for an unknown service (the stream stays open, as a
 * service may appear), else the status at once and at each change, probed every poll interval.
 * At shutdown it sends NOT_SERVING (unless it last sent that or SERVICE_UNKNOWN) and ends with the
 * shutdown's reason; it ends when the caller cancels.
 */
async function* watchHealth(
  known: boolean,
  current: () => Promise<ServingStatus>,
  options: { call: ServiceContext; shutdown: AbortSignal; pollIntervalMs: number },
): AsyncGenerator<HealthResponse> {
  const { call, shutdown } = options;
  let last: ServingStatus | undefined;
  if (!known) {
    last = ServingStatus.SERVICE_UNKNOWN;
    yield { status: last };
  }
  // One signal for the stream's life: a poll adds no listener to the shared shutdown signal.
  const stop = AbortSignal.any([call.signal, shutdown]);
  while (!shutdown.aborted) {
    if (last !== ServingStatus.SERVICE_UNKNOWN) {
      // A probe in progress holds neither the shutdown nor the caller's cancel.
      const status = await untilAborted(current(), stop).catch(() => undefined);
      if (shutdown.aborted) break;
      if (status === undefined) throw toAbortError(call.signal.reason);
      if (status !== last) {
        last = status;
        yield { status };
      }
    }
    const wait =
      last === ServingStatus.SERVICE_UNKNOWN
        ? untilAborted(new Promise<never>(() => {}), stop)
        : sleep(options.pollIntervalMs, stop);
    await wait.catch(() => {});
    if (call.signal.aborted) throw toAbortError(call.signal.reason);
  }
  if (last !== ServingStatus.NOT_SERVING && last !== ServingStatus.SERVICE_UNKNOWN) {
    yield { status: ServingStatus.NOT_SERVING };
  }
  throw shutdown.reason;
}
