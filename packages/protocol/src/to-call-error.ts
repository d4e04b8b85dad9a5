import type { Metadata } from "@grpc/grpc-js";
import { OpalError, toAbortError } from "@opal/core";
import { PeerStatus } from "./grpc-peer-status";
import { fromGrpcStatus, STATUS_DETAILS_TRAILER } from "./grpc-status";

/**
 * The `OpalError` a failed call raises: the abort reason when the call's `signal` ended it (the
 * caller's CANCELLED, the deadline's DEADLINE_EXCEEDED, a closed client's error), else the peer's
 * status through {@link fromGrpcStatus} with a {@link PeerStatus} as `cause`; anything else thrown
 * (a failing request iterator) as {@link OpalError.from}.
 */
export function toCallError(error: unknown, signal: AbortSignal): OpalError {
  if (signal.aborted) return toAbortError(signal.reason);
  if (error instanceof OpalError) return error;
  const { code, details, metadata } = error as {
    code?: unknown;
    details?: string;
    metadata?: Metadata;
  };
  if (typeof code !== "number") return OpalError.from(error);
  const bytes = metadata?.get(STATUS_DETAILS_TRAILER)[0];
  const peer = new PeerStatus(
    code,
    details ?? "",
    bytes instanceof Uint8Array ? new Uint8Array(bytes) : undefined,
  );
  const opal = fromGrpcStatus({ code, ...(details !== undefined ? { details } : {}), metadata });
  return new OpalError(opal.code, opal.rawMessage, {
    reason: opal.reason,
    fieldViolations: opal.fieldViolations,
    metadata: opal.metadata,
    ...(opal.retryDelayMs !== undefined ? { retryDelayMs: opal.retryDelayMs } : {}),
    ...(opal.resource ? { resource: opal.resource } : {}),
    cause: peer,
  });
}
