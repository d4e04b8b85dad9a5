import type { CallOptions } from "@opal/core";

/** Options of one call of a gRPC client made by `createGrpcClient` or `createGrpcChannel`. */
export interface GrpcCallOptions extends CallOptions {
  /**
   * Request headers of this call, added to the connection's (a key given here replaces the
   * connection's `authorization`; an empty value sends none).
   */
  readonly metadata?: Readonly<Record<string, string>>;
}
