import type { CallOptions } from "@opal/core";
import { createGrpcChannel } from "./create-grpc-channel";
import { HealthV1Definition as H } from "./gen/grpc-services";
import type { GrpcConnectionOptions } from "./grpc-connection-options";
import { type HealthStatus, toHealthStatus } from "./health-status";

/** A `grpc.health.v1.Health` client, as a load balancer, a probe or the conformance suite uses it. */
export interface HealthClient {
  /**
   * `Check(service)` within `options.timeoutMs` (default the client's); rejects with the call's
   * `OpalError` (NOT_FOUND for a service the server does not know).
   */
  check(service: string, options?: CallOptions): Promise<HealthStatus>;
  /**
   * `Watch(service)`: the statuses the server sends, in order, until `signal` aborts (then it ends
   * quietly) or the stream ends; rejects with the call's `OpalError` on any other failure.
   */
  watch(service: string, signal?: AbortSignal): AsyncIterable<HealthStatus>;
  /** Ends the calls in progress and closes the channel. */
  close(): void;
}

/** Options of {@link createHealthClient}: the connection's, and a default `Check` deadline. */
export interface HealthClientOptions extends GrpcConnectionOptions {
  /** Deadline of each `Check`, in ms; default 5,000. */
  readonly timeoutMs?: number;
}

/** Connects a health client to `address` (`host:port`); the connection is made on the first call. */
export function createHealthClient(
  address: string,
  options: HealthClientOptions = {},
): HealthClient {
  const channel = createGrpcChannel(address, options);
  return {
    async check(service, call = {}) {
      const timeoutMs = call.timeoutMs ?? options.timeoutMs ?? 5_000;
      const response = await channel.unary(H.check, { service }, { ...call, timeoutMs });
      return toHealthStatus(response.status);
    },
    async *watch(service, signal) {
      try {
        for await (const response of channel.serverStream(H.watch, { service }, { signal })) {
          yield toHealthStatus(response.status);
        }
      } catch (error) {
        if (!signal?.aborted) throw error;
      }
    },
    close: () => channel.close(),
  };
}
