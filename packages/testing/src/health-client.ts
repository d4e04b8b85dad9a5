import {
  type ChannelCredentials,
  Client,
  type ClientReadableStream,
  credentials as grpcCredentials,
  type ServiceError,
} from "@grpc/grpc-js";
import type { MethodDefinition } from "@grpc/proto-loader";
import { service as healthService } from "grpc-health-check";

/** A `grpc.health.v1.HealthCheckResponse.ServingStatus` name. */
export type HealthStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

/** A `grpc.health.v1.Health` client over grpc-js, as a load balancer or a probe uses it. */
export interface HealthClient {
  /** `Check(service)`; rejects with the grpc-js `ServiceError` when the call fails. */
  check(service: string): Promise<HealthStatus>;
  /**
   * `Watch(service)`: the statuses the server sends, in order, until `signal` aborts or the
   * stream ends. Ends quietly on abort; rejects with the `ServiceError` on any other failure.
   */
  watch(service: string, signal: AbortSignal): AsyncIterable<HealthStatus>;
  /** Closes the channel. */
  close(): void;
}

/** Options of {@link createHealthClient}; every field is optional. */
export interface HealthClientOptions {
  /** Channel credentials; default plaintext. */
  readonly credentials?: ChannelCredentials;
  /** Deadline of each `Check`, in ms; default 5,000. */
  readonly timeoutMs?: number;
}

type HealthRequest = { service: string };
type HealthResponse = { status: HealthStatus };

/** Connects a health client to `address` (`host:port`); the connection is made on the first call. */
export function createHealthClient(
  address: string,
  options: HealthClientOptions = {},
): HealthClient {
  const client = new Client(address, options.credentials ?? grpcCredentials.createInsecure());
  const method = (name: string) =>
    healthService[name] as MethodDefinition<HealthRequest, HealthResponse>;
  const check = method("Check");
  const watch = method("Watch");
  return {
    check(service) {
      return new Promise((resolve, reject) => {
        client.makeUnaryRequest(
          check.path,
          check.requestSerialize,
          check.responseDeserialize,
          { service },
          { deadline: Date.now() + (options.timeoutMs ?? 5_000) },
          (error: ServiceError | null, response?: HealthResponse) => {
            if (error) reject(error);
            else resolve(response!.status);
          },
        );
      });
    },
    async *watch(service, signal) {
      const stream: ClientReadableStream<HealthResponse> = client.makeServerStreamRequest(
        watch.path,
        watch.requestSerialize,
        watch.responseDeserialize,
        { service },
      );
      const onAbort = () => stream.cancel();
      signal.addEventListener("abort", onAbort, { once: true });
      try {
        for await (const response of stream) yield (response as HealthResponse).status;
      } catch (error) {
        if (!signal.aborted) throw error;
      } finally {
        signal.removeEventListener("abort", onAbort);
        stream.cancel();
      }
    },
    close() {
      client.close();
    },
  };
}
