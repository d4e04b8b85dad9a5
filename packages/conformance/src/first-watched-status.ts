import type { HealthClient, HealthStatus } from "@opal/protocol";

/**
 * The first status `Health.Watch(service)` sends, within `timeoutMs`; the stream is cancelled
 * then. Rejects when the stream fails, or ends (or the time runs out) before a status.
 */
export async function firstWatchedStatus(
  health: HealthClient,
  service: string,
  timeoutMs = 5_000,
): Promise<HealthStatus> {
  for await (const status of health.watch(service, AbortSignal.timeout(timeoutMs))) return status;
  throw new Error(`Health.Watch ended without a status within ${timeoutMs} ms`);
}
