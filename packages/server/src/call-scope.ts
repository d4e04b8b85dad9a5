import type { ServerSurfaceCall } from "@grpc/grpc-js/build/src/server-call";
import { Code, OpalError, Reason } from "@opal/core";
import type { Authenticator } from "./caller-auth";
import type { TenantLimiter } from "./tenant-limiter";

/** What one RPC runs with: its tenant and a signal that aborts on cancel, deadline or shutdown. */
export interface CallScope {
  readonly tenant: string;
  /** The caller's address as grpc-js reports it (`host:port`, `unix:…`, or "unknown"). */
  readonly peer: string;
  readonly signal: AbortSignal;
  /** Aborts the call with `reason` (e.g. superseded by a retry); its stream ends with that status. */
  abort(reason: OpalError): void;
  /** Runs `cleanup` when the scope ends, whatever the outcome. */
  onDispose(cleanup: () => void): void;
  /** Ends the scope: clears timers and listeners, runs the cleanups. Idempotent. */
  dispose(): void;
}

/** Shared state of the server that scopes register with. */
export interface ScopeRegistry {
  readonly authenticate: Authenticator;
  readonly limiter: TenantLimiter;
  /** Open scopes, aborted with UNAVAILABLE SHUTTING_DOWN on forced shutdown. */
  readonly open: Set<AbortController>;
  /**
   * The open scopes of watches (streams that never end by themselves, such as WatchTelemetry),
   * also in `open`: aborted with UNAVAILABLE SHUTTING_DOWN as soon as shutdown begins (TM-4), so
   * they do not hold the drain of the calls that do end.
   */
  readonly watches: Set<AbortController>;
  /** True once shutdown began: new calls fail with UNAVAILABLE SHUTTING_DOWN. */
  shuttingDown: boolean;
}

/** Options of {@link openCallScope}. */
export interface CallScopeOptions {
  /** Serve the call while shutting down (GetInfo); default false. */
  readonly servedWhileShuttingDown?: boolean;
  /** The call is a watch, ended as soon as shutdown begins (see `ScopeRegistry.watches`); default false. */
  readonly watch?: boolean;
}

/**
 * Opens the scope of a call in `PF-1` order: authenticates it (stage 1), refuses it while shutting
 * down (stage 2, unless `servedWhileShuttingDown`), applies the tenant's rate limit (stage 3), and
 * ties its signal to client cancellation (including a cancellation that arrived while the call was
 * being authenticated) and the call's deadline.
 */
export async function openCallScope(
  call: ServerSurfaceCall,
  registry: ScopeRegistry,
  { servedWhileShuttingDown = false, watch = false }: CallScopeOptions = {},
): Promise<CallScope> {
  const peer = call.getAuthContext?.()?.sslPeerCertificate;
  const commonName = typeof peer?.subject?.CN === "string" ? peer.subject.CN : undefined;
  const address = call.getPeer();
  const tenant = await registry.authenticate(call.metadata, {
    clientCertificateCommonName: commonName,
    address,
  });
  if (registry.shuttingDown && !servedWhileShuttingDown) throw shuttingDownError();
  registry.limiter.admitRequest(tenant);

  const controller = new AbortController();
  registry.open.add(controller);
  if (watch) registry.watches.add(controller);
  const onCancel = () =>
    controller.abort(
      new OpalError(Code.CANCELLED, "the caller cancelled", { reason: Reason.CANCELLED }),
    );
  call.on("cancelled", onCancel);
  // grpc-js emits "cancelled" once: a caller that went away during authentication is gone already.
  if (call.cancelled) onCancel();
  let timer: NodeJS.Timeout | undefined;
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  if (Number.isFinite(deadlineMs)) {
    timer = setTimeout(
      () =>
        controller.abort(
          new OpalError(Code.DEADLINE_EXCEEDED, "the call's deadline passed", {
            reason: Reason.DEADLINE_EXCEEDED,
          }),
        ),
      Math.max(0, deadlineMs - Date.now()),
    );
    timer.unref();
  }
  const cleanups: Array<() => void> = [];
  return {
    tenant,
    peer: address,
    signal: controller.signal,
    abort(reason) {
      controller.abort(reason);
    },
    onDispose(cleanup) {
      cleanups.push(cleanup);
    },
    dispose() {
      clearTimeout(timer);
      call.removeListener("cancelled", onCancel);
      registry.open.delete(controller);
      registry.watches.delete(controller);
      for (const cleanup of cleanups.splice(0)) cleanup();
    },
  };
}

/** UNAVAILABLE SHUTTING_DOWN with a retry delay: how a server that is shutting down ends calls. */
export function shuttingDownError(): OpalError {
  return new OpalError(Code.UNAVAILABLE, "device server is shutting down", {
    reason: Reason.SHUTTING_DOWN,
    retryDelayMs: 1000,
  });
}
