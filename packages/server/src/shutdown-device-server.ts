import type { GrpcListener } from "@opal/protocol";
import type { Logger } from "pino";
import { type DeviceCalls, shuttingDownError } from "./device-calls";
import type { DeviceHealth } from "./device-health";
import type { ServerMetrics } from "./server-metrics";

/** After a forced shutdown aborts the open calls, how long they get to send their status, in ms. */
const ABORTED_CALLS_GRACE_MS = 250;

/** What a device server's shutdown ends. */
export interface RunningDeviceServer {
  readonly address: string;
  readonly listener: GrpcListener;
  readonly calls: DeviceCalls;
  readonly health: DeviceHealth;
  readonly metrics: ServerMetrics | undefined;
  readonly logger: Logger;
}

/**
 * Shuts a device server down (see `DeviceServer.shutdown`): new calls are refused, health turns
 * NOT_SERVING and watches end at once with UNAVAILABLE SHUTTING_DOWN; running calls get `graceMs`
 * to finish, then are aborted with that error and get {@link ABORTED_CALLS_GRACE_MS} to send it
 * before the listener closes; then the metrics endpoint closes.
 */
export async function shutdownDeviceServer(
  server: RunningDeviceServer,
  graceMs: number,
): Promise<void> {
  const { calls, listener } = server;
  calls.shuttingDown = true;
  const reason = shuttingDownError();
  // Watches never end by themselves: they end now, and only calls that do end are drained.
  server.health.setShuttingDown(reason);
  calls.watches.abortAll(reason);
  const graceful = listener.shutdown();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<"expired">((resolve) => {
    timer = setTimeout(() => resolve("expired"), graceMs);
  });
  if ((await Promise.race([graceful, expired])) === "expired") {
    calls.others.abortAll(reason);
    // Let the aborted calls send their status, but do not wait on a driver that ignores its signal.
    await Promise.race([graceful, delay(ABORTED_CALLS_GRACE_MS)]);
    listener.forceShutdown();
  }
  clearTimeout(timer);
  await server.metrics?.close();
  server.logger.info({ address: server.address }, "device server stopped");
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
