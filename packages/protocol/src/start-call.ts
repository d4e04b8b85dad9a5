import { type Client, type CallOptions as GrpcJsCallOptions, Metadata } from "@grpc/grpc-js";
import { type CallRegistry, type CallSignal, invalidField, type OpalError } from "@opal/core";
import type { GrpcCallOptions } from "./grpc-call-options";

/** What every call of one channel shares: the grpc-js client, its calls in progress, its token. */
export interface GrpcCallContext {
  readonly client: Client;
  readonly calls: CallRegistry;
  readonly token: string | undefined;
  /** Set once the channel is closed: later calls fail with it at once. */
  closedError: OpalError | undefined;
}

/** One call being started: its signal (caller, deadline, close), headers and grpc-js options. */
export interface StartedCall extends CallSignal {
  readonly metadata: Metadata;
  readonly grpcOptions: GrpcJsCallOptions;
}

/**
 * The longest timeout sent to the server as `grpc-timeout`, in ms. grpc-js writes a timeout of
 * 1e8 ms or more in whole seconds (rounded up) and the grpc-js server reads it back as a 32-bit
 * integer (`| 0`): 2 147 484 s would overflow and fail the call at once. Longer timeouts are
 * enforced by the call's own signal only.
 */
export const MAX_SENT_TIMEOUT_MS = 2_147_483_000;

/**
 * Registers a call with the channel: throws the channel's closed error once closed,
 * INVALID_ARGUMENT for a bad `timeoutMs` and INVALID_ARGUMENT INVALID_FIELD `metadata` for a
 * header grpc-js refuses (nothing is registered then). The deadline goes to the signal (so the error is this client's
 * DEADLINE_EXCEEDED) and, up to {@link MAX_SENT_TIMEOUT_MS}, to the server (`grpc-timeout`). The
 * caller must `dispose()` the call when it ends.
 */
export function startCall(context: GrpcCallContext, options: GrpcCallOptions = {}): StartedCall {
  if (context.closedError) throw context.closedError;
  const metadata = metadataOf(context.token, options.metadata);
  const scope = context.calls.open(options);
  const { timeoutMs } = options;
  return {
    signal: scope.signal,
    dispose: scope.dispose,
    metadata,
    grpcOptions:
      timeoutMs === undefined || timeoutMs > MAX_SENT_TIMEOUT_MS
        ? {}
        : { deadline: Date.now() + timeoutMs },
  };
}

/** The call's headers: the bearer token, then the call's own (an empty value removes a header). */
function metadataOf(
  token: string | undefined,
  headers: GrpcCallOptions["metadata"] = {},
): Metadata {
  const metadata = new Metadata();
  if (token) metadata.set("authorization", `Bearer ${token}`);
  for (const [key, value] of Object.entries(headers)) {
    try {
      if (value) metadata.set(key, value);
      else metadata.remove(key);
    } catch (error) {
      throw invalidField("metadata", `header "${key}" is refused: ${(error as Error).message}`);
    }
  }
  return metadata;
}
