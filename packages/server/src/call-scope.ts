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
  /** True once shutdown began: new calls fail with UNAVAILABLE SHUTTING_DOWN. */
  shuttingDown: boolean;
}

/**
 * Opens the scope of a call: refuses it while shutting down (unless `servedWhileShuttingDown`, for
 * GetInfo), authenticates it, applies the tenant's rate limit, and ties its signal to client
 * cancellation and the call's deadline.
 */
export async function openCallScope(
  call: ServerSurfaceCall,
  registry: ScopeRegistry,
  { servedWhileShuttingDown = false }: { readonly servedWhileShuttingDown?: boolean } = {},
): Promise<CallScope> {
  if (registry.shuttingDown && !servedWhileShuttingDown) {
    throw new OpalError(Code.UNAVAILABLE, "device server is shutting down", {
      reason: Reason.SHUTTING_DOWN,
      retryDelayMs: 1000,
    });
  }
  const peer = call.getAuthContext?.()?.sslPeerCertificate;
  const commonName = typeof peer?.subject?.CN === "string" ? peer.subject.CN : undefined;
  const address = call.getPeer();
  const tenant = await registry.authenticate(call.metadata, {
    clientCertificateCommonName: commonName,
    address,
  });
  registry.limiter.admitRequest(tenant);

  const controller = new AbortController();
  registry.open.add(controller);
  const onCancel = () =>
    controller.abort(
      new OpalError(Code.CANCELLED, "the caller cancelled", { reason: Reason.CANCELLED }),
    );
  call.on("cancelled", onCancel);
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
      for (const cleanup of cleanups.splice(0)) cleanup();
    },
  };
}
