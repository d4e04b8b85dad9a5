import type { Server, ServerUnaryCall, ServerWritableStream, sendUnaryData } from "@grpc/grpc-js";
import { Code, type OpalError } from "@opal/core";
import { toGrpcStatus } from "@opal/protocol";
import { service as healthService } from "grpc-health-check";

type ServingStatus = "SERVING" | "NOT_SERVING";
type HealthRequest = { service: string };
type HealthResponse = { status: ServingStatus | "SERVICE_UNKNOWN" };

/**
 * `grpc.health.v1.Health` of a device server, following the driver's `probe()` (GEN-9, ID-12):
 * `SERVING` exactly when the probe answers "ready" within its timeout, `NOT_SERVING` otherwise and
 * for good once shutdown begins. `Check` and `List` probe on each call; a `Watch` stream probes
 * every poll interval and sends each transition.
 */
export interface DeviceHealth {
  /** Registers `grpc.health.v1.Health` (Check, Watch, List) on `server`. */
  addToServer(server: Server): void;
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
  let shutdownReason: OpalError | undefined;
  const watchers = new Set<(reason: OpalError) => void>();

  const current = async (): Promise<ServingStatus> => {
    if (shutdownReason) return "NOT_SERVING";
    const ready = await probe().catch(() => false);
    return ready && !shutdownReason ? "SERVING" : "NOT_SERVING";
  };

  const check = (
    call: ServerUnaryCall<HealthRequest, HealthResponse>,
    callback: sendUnaryData<HealthResponse>,
  ) => {
    const name = call.request.service;
    if (!known.has(name)) {
      callback({ code: Code.NOT_FOUND, details: `unknown service ${JSON.stringify(name)}` });
      return;
    }
    current().then((status) => callback(null, { status }));
  };

  const list = (
    _call: ServerUnaryCall<unknown, unknown>,
    callback: sendUnaryData<{ statuses: Record<string, HealthResponse> }>,
  ) => {
    current().then((status) =>
      callback(null, {
        statuses: Object.fromEntries([...known].map((name) => [name, { status }])),
      }),
    );
  };

  const watch = (call: ServerWritableStream<HealthRequest, HealthResponse>) => {
    let last: HealthResponse["status"] | undefined;
    let timer: NodeJS.Timeout | undefined;
    let ended = false;
    const refresh = async () => {
      const status = await current();
      if (ended) return;
      if (status !== last) {
        last = status;
        call.write({ status });
      }
      timer = setTimeout(refresh, options.pollIntervalMs);
    };
    const stop = () => {
      ended = true;
      clearTimeout(timer);
      watchers.delete(end);
    };
    const end = (reason: OpalError) => {
      if (ended) return;
      stop();
      if (last !== "NOT_SERVING" && last !== "SERVICE_UNKNOWN")
        call.write({ status: "NOT_SERVING" });
      call.emit("error", toGrpcStatus(reason));
    };
    if (!known.has(call.request.service)) {
      // The stream stays open (a service may appear), so it too ends at shutdown.
      last = "SERVICE_UNKNOWN";
      call.write({ status: last });
    }
    if (shutdownReason) {
      end(shutdownReason);
      return;
    }
    watchers.add(end);
    call.on("cancelled", stop);
    if (last === undefined) void refresh();
  };

  return {
    addToServer(server) {
      server.addService(healthService, { check, watch, list });
    },
    setShuttingDown(reason) {
      if (shutdownReason) return;
      shutdownReason = reason;
      for (const end of [...watchers]) end(reason);
    },
  };
}
