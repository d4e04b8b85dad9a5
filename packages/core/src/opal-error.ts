import { Code, codeName, isCode } from "./code";
import type { ErrorReason } from "./error-reason";

/** One invalid field of a request, as in `google.rpc.BadRequest.FieldViolation`. */
export interface FieldViolation {
  /** Path of the field, e.g. `prompt_token_ids` or `kv_format.block_size_tokens`. */
  readonly field: string;
  /** What was expected and what arrived. */
  readonly description: string;
}

/** The resource an error is about, as in `google.rpc.ResourceInfo`. */
export interface ResourceInfo {
  /** Kind of resource, e.g. `opal.device.v1.KvHandle`. */
  readonly resourceType: string;
  /** Its name or id; never a secret such as a full KV handle. */
  readonly resourceName: string;
  /** Optional owner (tenant) description; empty when not disclosed. */
  readonly owner?: string;
  /** Optional human-readable description. */
  readonly description?: string;
}

/** Options of the {@link OpalError} constructor; every field is optional. */
export interface OpalErrorOptions {
  /** Machine-readable reason: one of the protocol's (`Reason`), or a local one of a subclass. */
  readonly reason?: ErrorReason | "";
  /** How long the caller should wait before retrying, in milliseconds (from `google.rpc.RetryInfo`). */
  readonly retryDelayMs?: number;
  /** Invalid request fields (from `google.rpc.BadRequest`). */
  readonly fieldViolations?: readonly FieldViolation[];
  /** The resource concerned (from `google.rpc.ResourceInfo`). */
  readonly resource?: ResourceInfo;
  /** Extra key/value context (from `google.rpc.ErrorInfo.metadata`). */
  readonly metadata?: Readonly<Record<string, string>>;
  /** The underlying error, kept for debugging; never sent over the wire. */
  readonly cause?: unknown;
}

/**
 * The one error type of OPAL. Every failure that crosses a package boundary is an `OpalError` with a
 * gRPC-aligned {@link Code}; its message leads with the code name: `[invalid_argument] layer 33 out of
 * range (model has 32 layers)`.
 */
export class OpalError extends Error {
  override readonly name = "OpalError";
  /** The status code. */
  readonly code: Code;
  /** Message without the `[code]` prefix. */
  readonly rawMessage: string;
  /** Machine-readable reason, e.g. `MODEL_NOT_LOADED` (see {@link ErrorReason}); empty when none applies. */
  readonly reason: ErrorReason | "";
  /** Suggested retry delay in milliseconds, when the failure is transient. */
  readonly retryDelayMs: number | undefined;
  /** Invalid request fields; empty unless `code` is INVALID_ARGUMENT. */
  readonly fieldViolations: readonly FieldViolation[];
  /** The resource concerned, if any. */
  readonly resource: ResourceInfo | undefined;
  /** Extra context. */
  readonly metadata: Readonly<Record<string, string>>;

  constructor(code: Code, message: string, options: OpalErrorOptions = {}) {
    super(`[${codeName(code)}] ${message}`, { cause: options.cause });
    this.code = code;
    this.rawMessage = message;
    this.reason = options.reason ?? "";
    this.retryDelayMs = options.retryDelayMs;
    this.fieldViolations = options.fieldViolations ?? [];
    this.resource = options.resource;
    this.metadata = options.metadata ?? {};
  }

  /**
   * Converts anything thrown into an `OpalError`: an `OpalError` is returned as is, an abort becomes
   * CANCELLED (or DEADLINE_EXCEEDED for a timeout), an object with a numeric gRPC `code` keeps it, and
   * anything else becomes `fallbackCode` (UNKNOWN by default) with the original as `cause`.
   */
  static from(error: unknown, fallbackCode: Code = Code.UNKNOWN): OpalError {
    if (error instanceof OpalError) return error;
    if (error instanceof Error) {
      if (error.name === "TimeoutError") {
        return new OpalError(Code.DEADLINE_EXCEEDED, error.message, { cause: error });
      }
      if (error.name === "AbortError") {
        return new OpalError(Code.CANCELLED, error.message, { cause: error });
      }
      const code = (error as { code?: unknown }).code;
      return new OpalError(isCode(code) ? code : fallbackCode, error.message, { cause: error });
    }
    return new OpalError(fallbackCode, String(error), { cause: error });
  }
}

/** True when `error` is an `OpalError`, optionally with the given code. */
export function isOpalError(error: unknown, code?: Code): error is OpalError {
  return error instanceof OpalError && (code === undefined || error.code === code);
}
