import protobuf from "protobufjs";

/** A `grpc.health.v1.HealthCheckResponse.ServingStatus` name. */
export type HealthStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

/** `grpc.health.v1.HealthCheckRequest`. */
export interface HealthCheckRequest {
  /** The service asked about; "" for the server as a whole. */
  readonly service: string;
}

/** `grpc.health.v1.HealthCheckResponse`, its status by name. */
export interface HealthCheckResponse {
  readonly status: HealthStatus;
}

// grpc/health/v1/health.proto as a protobufjs JSON descriptor (wire-identical; no file lookup).
const root = protobuf.Root.fromJSON({
  nested: {
    grpc: {
      nested: {
        health: {
          nested: {
            v1: {
              nested: {
                HealthCheckRequest: { fields: { service: { type: "string", id: 1 } } },
                HealthCheckResponse: {
                  fields: { status: { type: "ServingStatus", id: 1 } },
                  nested: {
                    ServingStatus: {
                      values: { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 },
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
  },
});
const Request = root.lookupType("grpc.health.v1.HealthCheckRequest");
const Response = root.lookupType("grpc.health.v1.HealthCheckResponse");
const STATUSES: readonly HealthStatus[] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

const method = <Stream extends boolean>(name: string, responseStream: Stream) => ({
  path: `/grpc.health.v1.Health/${name}`,
  originalName: name,
  requestStream: false as const,
  responseStream,
  requestSerialize: (message: HealthCheckRequest): Buffer =>
    Buffer.from(Request.encode(Request.fromObject(message)).finish()),
  responseDeserialize: (bytes: Buffer): HealthCheckResponse => ({
    status:
      STATUSES[(Response.decode(bytes) as unknown as { status?: number }).status ?? 0] ?? "UNKNOWN",
  }),
});

/** grpc-js client definition of `grpc.health.v1.Health` (GEN-9), statuses by name. */
export const HealthServiceDefinition = {
  check: method("Check", false as const),
  watch: method("Watch", true as const),
};
