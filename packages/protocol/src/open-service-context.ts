import type { ServerUnaryCall } from "@grpc/grpc-js";
import { Code, OpalError, Reason } from "@opal/core";
import type { ServiceContext } from "./service-context";

/** The part of a grpc-js server call (of any kind) a context is made from. */
export type SurfaceCall = Pick<
  ServerUnaryCall<unknown, unknown>,
  "cancelled" | "getPeer" | "getDeadline" | "getAuthContext" | "metadata"
> & {
  on(event: "cancelled", listener: () => void): unknown;
  removeListener(event: "cancelled", listener: () => void): unknown;
};

/** A call's context and how to end it. */
export interface OpenServiceContext {
  readonly context: ServiceContext;
  /** Clears the deadline timer and the cancel listener, then runs the `onDispose` cleanups. */
  dispose(): void;
}

/**
 * Opens the context of `call`: its signal aborts with CANCELLED when the caller cancels (also when
 * that happened before this ran), with DEADLINE_EXCEEDED when the call's deadline passes, and with
 * the reason given to `abort`.
 */
export function openServiceContext(call: SurfaceCall, method: string): OpenServiceContext {
  const controller = new AbortController();
  const onCancel = () =>
    controller.abort(
      new OpalError(Code.CANCELLED, "the caller cancelled", { reason: Reason.CANCELLED }),
    );
  call.on("cancelled", onCancel);
  // grpc-js emits "cancelled" once: a caller that went away already is gone.
  if (call.cancelled) onCancel();
  const timer = deadlineTimer(call, controller);
  const cleanups: Array<() => void> = [];
  const certificate = call.getAuthContext?.()?.sslPeerCertificate;
  const commonName = certificate?.subject?.CN;
  return {
    context: {
      method,
      metadata: call.metadata,
      peer: call.getPeer(),
      peerCommonName: typeof commonName === "string" ? commonName : undefined,
      signal: controller.signal,
      abort: (reason) => controller.abort(reason),
      onDispose: (cleanup) => cleanups.push(cleanup),
    },
    dispose() {
      clearTimeout(timer);
      call.removeListener("cancelled", onCancel);
      for (const cleanup of cleanups.splice(0)) cleanup();
    },
  };
}

/** Aborts `controller` with DEADLINE_EXCEEDED at the call's deadline, if it has one. */
function deadlineTimer(call: SurfaceCall, controller: AbortController): NodeJS.Timeout | undefined {
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  if (!Number.isFinite(deadlineMs)) return undefined;
  const timer = setTimeout(
    () =>
      controller.abort(
        new OpalError(Code.DEADLINE_EXCEEDED, "the call's deadline passed", {
          reason: Reason.DEADLINE_EXCEEDED,
        }),
      ),
    Math.max(0, deadlineMs - Date.now()),
  );
  timer.unref();
  return timer;
}
