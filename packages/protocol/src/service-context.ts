import type { OpalError } from "@opal/core";

/** A call's request metadata: every value of a key in arrival order (binary `-bin` keys as bytes). */
export interface CallMetadata {
  get(key: string): Array<string | Buffer>;
}

/**
 * What a service handler runs with, one per call. Services extend it with the per-call values their
 * interceptors set (e.g. the tenant), declared in their own context type.
 */
export interface ServiceContext {
  /** The method's name as the `.proto` spells it, e.g. "Prefill". */
  readonly method: string;
  readonly metadata: CallMetadata;
  /** The caller's address as grpc-js reports it (`host:port`, `unix:…`, or "unknown"). */
  readonly peer: string;
  /** Subject CN of the caller's verified TLS client certificate; undefined without one. */
  readonly peerCommonName: string | undefined;
  /**
   * Aborts when the caller cancels (CANCELLED), the call's deadline passes (DEADLINE_EXCEEDED),
   * {@link ServiceContext.abort} is called, or an interceptor's signal aborts (e.g. shutdown); its
   * reason is an `OpalError`.
   */
  readonly signal: AbortSignal;
  /** Aborts the call with `reason` (e.g. superseded by a retry); it ends with that status. */
  abort(reason: OpalError): void;
  /** Runs `cleanup` once the call has ended (after its status is sent), whatever the outcome. */
  onDispose(cleanup: () => void): void;
}
