import { type Client, type CallOptions as GrpcJsCallOptions, Metadata } from "@grpc/grpc-js";
import type { CallRegistry, CallSignal, OpalError } from "@opal/core";
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
 * Registers a call with the channel: throws the channel's closed error once closed, and
 * INVALID_ARGUMENT for a bad `timeoutMs`. The deadline goes both to the signal (so the error is
 * this client's DEADLINE_EXCEEDED) and to the server (`grpc-timeout`). The caller must `dispose()`
 * the call when it ends.
 */
export function startCall(context: GrpcCallContext, options: GrpcCallOptions = {}): StartedCall {
  if (context.closedError) throw context.closedError;
  const scope = context.calls.open(options);
  const metadata = new Metadata();
  if (context.token) metadata.set("authorization", `Bearer ${context.token}`);
  for (const [key, value] of Object.entries(options.metadata ?? {})) {
    if (value) metadata.set(key, value);
    else metadata.remove(key);
  }
  const { timeoutMs } = options;
  return {
    signal: scope.signal,
    dispose: scope.dispose,
    metadata,
    grpcOptions: timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs },
  };
}
