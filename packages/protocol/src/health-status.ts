import { grpc } from "./gen/grpc-pb.js";

const { ServingStatus } = grpc.health.v1.HealthCheckResponse;

/** A `grpc.health.v1.HealthCheckResponse.ServingStatus` by name, as health clients report it. */
export type HealthStatus = keyof typeof ServingStatus;

/** The name of the wire status `status`; "UNKNOWN" for a number grpc.health.v1 does not define. */
export function toHealthStatus(status: number): HealthStatus {
  return (ServingStatus[status] as HealthStatus | undefined) ?? "UNKNOWN";
}
