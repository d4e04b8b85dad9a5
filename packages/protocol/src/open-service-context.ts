import type { ServerUnaryCall } from "@grpc/grpc-js";
import { Code, MAX_TIMER_MS, OpalError, Reason } from "@opal/core";
import type { ServiceContext } from "./service-context";

/** The part of a grpc-js server call (of any kind) a context is made from. */
export type SurfaceCall = Pick<
  ServerUnaryCall<unknown, unknown>,
  "cancelled" | "getPeer" | "getDeadline" | "getAuthContext" | "metadata"
> & {
  on(event: "cancelled", listener: () => void): unknown;
  removeListener(event: "cancelled", listener: () => void): unknown;
};

/** A cancellation this close to the call's deadline is the deadline, in ms. */
const DEADLINE_TOLERANCE_MS = 5;

/** A call's context and how to end it. */
export interface OpenServiceContext {
  readonly context: ServiceContext;
  /** Clears the deadline timer and the cancel listener, then runs the `onDispose` cleanups. */
  dispose(): void;
}

/**
 * Opens the context of `call`: its signal aborts with CANCELLED when the caller cancels (also when
 * that happened before this ran), with DEADLINE_EXCEEDED when the call's deadline passes (whether
 * our timer or grpc-js notices first; a deadline more than `MAX_TIMER_MS` away arms no timer), and
 * with the reason given to `abort`.
 */
export function openServiceContext(call: SurfaceCall, method: string): OpenServiceContext {
  const controller = new AbortController();
  const deadlineMs = deadlineOf(call);
  // grpc-js also ends a call whose deadline passed as "cancelled", usually before our own timer
  // (and its timer may fire a little before the wall clock reaches the deadline).
  const onCancel = () =>
    controller.abort(
      Date.now() >= deadlineMs - DEADLINE_TOLERANCE_MS
        ? deadlinePassed()
        : new OpalError(Code.CANCELLED, "the caller cancelled", { reason: Reason.CANCELLED }),
    );
  call.on("cancelled", onCancel);
  // grpc-js emits "cancelled" once: a caller that went away already is gone.
  if (call.cancelled) onCancel();
  // Beyond MAX_TIMER_MS a timer would fire at once; grpc-js treats such a deadline as none too.
  const timer =
    deadlineMs - Date.now() <= MAX_TIMER_MS
      ? setTimeout(() => controller.abort(deadlinePassed()), Math.max(0, deadlineMs - Date.now()))
      : undefined;
  timer?.unref();
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

/** The call's deadline in ms since the epoch; Infinity without one. */
function deadlineOf(call: SurfaceCall): number {
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  return Number.isFinite(deadlineMs) ? deadlineMs : Infinity;
}

function deadlinePassed(): OpalError {
  return new OpalError(Code.DEADLINE_EXCEEDED, "the call's deadline passed", {
    reason: Reason.DEADLINE_EXCEEDED,
  });
}
