import { Metadata, type StatusObject } from "@grpc/grpc-js";
import { Code, isCode, OpalError, Reason } from "@opal/core";
import { decodeStatus, encodeStatus } from "./status-codec";

/** The reason a status gets when its error names none, by code. */
const DEFAULT_REASONS: Partial<Record<number, Reason>> = {
  [Code.CANCELLED]: Reason.CANCELLED,
  [Code.DEADLINE_EXCEEDED]: Reason.DEADLINE_EXCEEDED,
  [Code.INVALID_ARGUMENT]: Reason.INVALID_FIELD,
  [Code.UNAUTHENTICATED]: Reason.TOKEN_INVALID,
  [Code.PERMISSION_DENIED]: Reason.PERMISSION_DENIED,
  [Code.RESOURCE_EXHAUSTED]: Reason.DEVICE_BUSY,
  [Code.UNAVAILABLE]: Reason.DEVICE_FAULT,
  [Code.DATA_LOSS]: Reason.STREAM_INCOMPLETE,
};

/** The trailer that carries a binary `google.rpc.Status`. */
export const STATUS_DETAILS_TRAILER = "grpc-status-details-bin";

/**
 * Converts an error into the status a grpc-js server call ends with: code, message, and the encoded
 * `google.rpc.Status` in the `grpc-status-details-bin` trailer. Anything that is not an `OpalError`
 * becomes INTERNAL without leaking its message.
 */
export function toGrpcStatus(error: unknown): Pick<StatusObject, "code" | "details" | "metadata"> {
  let opal =
    error instanceof OpalError
      ? error
      : new OpalError(Code.INTERNAL, "internal error", { reason: Reason.INTERNAL, cause: error });
  if (!opal.reason) {
    // Every OPAL status carries an ErrorInfo: give reason-less errors the generic reason of their code.
    opal = new OpalError(opal.code, opal.rawMessage, {
      reason: DEFAULT_REASONS[opal.code] ?? Reason.INTERNAL,
      fieldViolations: opal.fieldViolations,
      metadata: opal.metadata,
      cause: opal.cause,
      ...(opal.retryDelayMs !== undefined ? { retryDelayMs: opal.retryDelayMs } : {}),
      ...(opal.resource ? { resource: opal.resource } : {}),
    });
  }
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_TRAILER, Buffer.from(encodeStatus(opal)));
  return { code: opal.code, details: opal.rawMessage, metadata };
}

/**
 * Converts a status seen by a grpc-js client (a `ServiceError` or a `StatusObject`) into an
 * `OpalError`, preferring the rich details of the `grpc-status-details-bin` trailer; a malformed
 * trailer falls back to the plain code and message.
 */
export function fromGrpcStatus(status: {
  code?: number;
  details?: string;
  metadata?: Metadata;
}): OpalError {
  const code = isCode(status.code) ? status.code : Code.UNKNOWN;
  const bytes = status.metadata?.get(STATUS_DETAILS_TRAILER)[0];
  if (bytes instanceof Uint8Array) {
    try {
      const rich = decodeStatus(bytes);
      if (rich.code === code) return rich;
    } catch {
      // A malformed trailer: keep the plain status below.
    }
  }
  return new OpalError(code, status.details ?? "", { cause: status });
}
