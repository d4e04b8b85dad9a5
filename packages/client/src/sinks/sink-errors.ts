import { Code, OpalError, Reason } from "@opal/core";

/**
 * FAILED_PRECONDITION DESCRIPTOR_MISMATCH: the sink's target cannot take this cache. The message
 * names what differs, the target's value and the cache's: `[failed_precondition] dtype: the pool
 * holds bf16, the cache is f16`.
 */
export function descriptorMismatch(what: string, target: string, cache: string): OpalError {
  return new OpalError(Code.FAILED_PRECONDITION, `${what}: ${target}, ${cache}`, {
    reason: Reason.DESCRIPTOR_MISMATCH,
  });
}

/** CANCELLED: the sink was aborted before the call could complete. */
export function sinkCancelled(operation: string): OpalError {
  return new OpalError(Code.CANCELLED, `${operation}: the sink was aborted`, {
    reason: Reason.CANCELLED,
  });
}

const errnoCodes: Readonly<Record<string, Code>> = {
  ENOENT: Code.FAILED_PRECONDITION,
  ENOTDIR: Code.FAILED_PRECONDITION,
  EISDIR: Code.FAILED_PRECONDITION,
  EEXIST: Code.ALREADY_EXISTS,
  ENOSPC: Code.RESOURCE_EXHAUSTED,
  EDQUOT: Code.RESOURCE_EXHAUSTED,
  EMFILE: Code.RESOURCE_EXHAUSTED,
  EACCES: Code.PERMISSION_DENIED,
  EPERM: Code.PERMISSION_DENIED,
  EROFS: Code.PERMISSION_DENIED,
};

/**
 * Any error as an `OpalError`: `OpalError`s unchanged; file-system errors by errno (ENOENT and
 * ENOTDIR FAILED_PRECONDITION, EEXIST ALREADY_EXISTS, ENOSPC/EDQUOT/EMFILE RESOURCE_EXHAUSTED,
 * EACCES/EPERM/EROFS PERMISSION_DENIED with reason PERMISSION_DENIED); anything else INTERNAL
 * INTERNAL. The original is kept as `cause`.
 */
export function toSinkError(error: unknown): OpalError {
  if (error instanceof OpalError) return error;
  const errno = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  const code = typeof errno === "string" ? errnoCodes[errno] : undefined;
  if (code === undefined) {
    return new OpalError(Code.INTERNAL, message, { reason: Reason.INTERNAL, cause: error });
  }
  return new OpalError(code, message, {
    reason: code === Code.PERMISSION_DENIED ? Reason.PERMISSION_DENIED : undefined,
    cause: error,
  });
}
