import { Code, OpalError, Reason } from "@opal/core";

const MALFORMED = Symbol("malformed request");

/** What a request deserializer returns for bytes that are not a valid message. */
export interface MalformedRequest {
  readonly [MALFORMED]: string;
}

/**
 * Wraps the request deserializer of the method named `method` (its `.proto` name) so that bytes
 * which do not parse become a {@link MalformedRequest} ("not a valid <method> request: ...")
 * instead of an exception: grpc-js would answer an exception with a bare INTERNAL "Error
 * deserializing request"; the handler answers INVALID_ARGUMENT INVALID_FIELD with its ErrorInfo
 * (ERR-2) once the caller is authenticated.
 */
export function tolerantDeserializer<T>(
  method: string,
  deserialize: (bytes: Buffer) => T,
): (bytes: Buffer) => T | MalformedRequest {
  return (bytes) => {
    try {
      return deserialize(bytes);
    } catch (error) {
      return { [MALFORMED]: `not a valid ${method} request: ${(error as Error).message}` };
    }
  };
}

/** Throws INVALID_ARGUMENT INVALID_FIELD when `request` came from bytes that did not parse. */
export function assertWellFormed(request: unknown): void {
  if (request && typeof request === "object" && MALFORMED in request) {
    const description = (request as MalformedRequest)[MALFORMED];
    throw new OpalError(Code.INVALID_ARGUMENT, description, {
      reason: Reason.INVALID_FIELD,
      fieldViolations: [{ field: "", description }],
    });
  }
}
