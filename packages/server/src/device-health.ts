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
  /** Turns NOT_SERVING for good and tells every watcher at once. Idempotent. */
  setShuttingDown(): void;
  /** Ends every open `Watch` stream with `reason` (forced shutdown). */
  close(reason: OpalError): void;
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
  let shuttingDown = false;
  const watchers = new Set<{ refresh(): void; end(reason: OpalError): void }>();

  const current = async (): Promise<ServingStatus> => {
    if (shuttingDown) return "NOT_SERVING";
    const ready = await probe().catch(() => false);
    return ready && !shuttingDown ? "SERVING" : "NOT_SERVING";
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
    if (!known.has(call.request.service)) {
      call.write({ status: "SERVICE_UNKNOWN" });
      return;
    }
    let last: ServingStatus | undefined;
    let timer: NodeJS.Timeout | undefined;
    let ended = false;
    let probing = false;
    const refresh = async () => {
      if (ended || probing) return;
      probing = true;
      const status = await current();
      probing = false;
      if (ended) return;
      if (status !== last) {
        last = status;
        call.write({ status });
      }
      clearTimeout(timer);
      timer = setTimeout(refresh, options.pollIntervalMs);
    };
    const watcher = {
      refresh: () => {
        probing = false;
        void refresh();
      },
      end(reason: OpalError) {
        stop();
        call.emit("error", toGrpcStatus(reason));
      },
    };
    const stop = () => {
      ended = true;
      clearTimeout(timer);
      watchers.delete(watcher);
    };
    watchers.add(watcher);
    call.on("cancelled", stop);
    void refresh();
  };

  return {
    addToServer(server) {
      server.addService(healthService, { check, watch, list });
    },
    setShuttingDown() {
      if (shuttingDown) return;
      shuttingDown = true;
      for (const watcher of watchers) watcher.refresh();
    },
    close(reason) {
      for (const watcher of [...watchers]) watcher.end(reason);
    },
  };
}
