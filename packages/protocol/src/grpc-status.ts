import { Metadata, type StatusObject } from "@grpc/grpc-js";
import { Code, isCode, OpalError } from "@opal/core";
import { decodeStatus, encodeStatus } from "./status-codec";

/** The trailer that carries a binary `google.rpc.Status`. */
export const STATUS_DETAILS_TRAILER = "grpc-status-details-bin";

/**
 * Converts an error into the status a grpc-js server call ends with: code, message, and the encoded
 * `google.rpc.Status` in the `grpc-status-details-bin` trailer. Anything that is not an `OpalError`
 * becomes INTERNAL without leaking its message.
 */
export function toGrpcStatus(error: unknown): Pick<StatusObject, "code" | "details" | "metadata"> {
  const opal =
    error instanceof OpalError
      ? error
      : new OpalError(Code.INTERNAL, "internal error", { reason: "INTERNAL", cause: error });
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
