import {
  type ChannelCredentials,
  Client,
  type ClientReadableStream,
  type ServiceError,
} from "@grpc/grpc-js";
import { fromJSON, type MethodDefinition, type ServiceDefinition } from "@grpc/proto-loader";

/** A `grpc.health.v1.HealthCheckResponse.ServingStatus` name. */
export type HealthStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

/** A minimal `grpc.health.v1.Health` client (`GEN-9`). */
export interface HealthClient {
  /** `Check(service)`; rejects with the grpc-js error when the call fails. */
  check(service: string, timeoutMs?: number): Promise<HealthStatus>;
  /** `Watch(service)`: resolves with the first status the server sends, then cancels the stream. */
  watchFirst(service: string, timeoutMs?: number): Promise<HealthStatus>;
  close(): void;
}

type Request = { service: string };
type Response = { status: HealthStatus };

// grpc/health/v1/health.proto, as a protobufjs JSON descriptor (wire-identical; no file lookup).
const HEALTH = {
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
                Health: {
                  methods: {
                    Check: {
                      requestType: "HealthCheckRequest",
                      responseType: "HealthCheckResponse",
                    },
                    Watch: {
                      requestType: "HealthCheckRequest",
                      responseType: "HealthCheckResponse",
                      responseStream: true,
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
};

/** Connects a health client to `target`; plaintext unless `credentials` are given. */
export function createHealthClient(target: string, credentials: ChannelCredentials): HealthClient {
  const service = fromJSON(HEALTH as unknown as Parameters<typeof fromJSON>[0], {
    enums: String,
    defaults: true,
  })["grpc.health.v1.Health"] as ServiceDefinition;
  const check = service.Check as MethodDefinition<Request, Response>;
  const watch = service.Watch as MethodDefinition<Request, Response>;
  const client = new Client(target, credentials);
  return {
    check(name, timeoutMs = 5_000) {
      return new Promise((resolve, reject) => {
        client.makeUnaryRequest(
          check.path,
          check.requestSerialize,
          check.responseDeserialize,
          { service: name },
          { deadline: Date.now() + timeoutMs },
          (error: ServiceError | null, response?: Response) => {
            if (error) reject(error);
            else resolve(response!.status);
          },
        );
      });
    },
    async watchFirst(name, timeoutMs = 5_000) {
      const stream: ClientReadableStream<Response> = client.makeServerStreamRequest(
        watch.path,
        watch.requestSerialize,
        watch.responseDeserialize,
        { service: name },
        { deadline: Date.now() + timeoutMs },
      );
      stream.on("error", () => {});
      try {
        for await (const response of stream) return (response as Response).status;
        throw new Error("Health.Watch ended without a status");
      } finally {
        stream.cancel();
      }
    },
    close: () => client.close(),
  };
}
