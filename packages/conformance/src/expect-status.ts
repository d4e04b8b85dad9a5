import { Code, codeName, OpalError, Reason } from "@opal/core";
import { assertConformance, FAILURE_REASON } from "./conformance-test";
import { toWireStatus, type WireStatus } from "./wire-status";

/** The status code each documented reason goes with (docs/protocol/errors.md §3). */
export const REASON_CODES: Readonly<Record<string, readonly number[]>> = {
  INVALID_FIELD: [Code.INVALID_ARGUMENT],
  PROTOCOL_VERSION_UNSUPPORTED: [Code.FAILED_PRECONDITION],
  MODEL_NOT_LOADED: [Code.FAILED_PRECONDITION],
  MODEL_CONFIG_INVALID: [Code.INVALID_ARGUMENT],
  MODEL_WEIGHTS_INVALID: [Code.INVALID_ARGUMENT],
  MODEL_ID_CONFLICT: [Code.ALREADY_EXISTS],
  PROMPT_EMPTY: [Code.INVALID_ARGUMENT],
  PROMPT_TOO_LONG: [Code.INVALID_ARGUMENT],
  TOKEN_OUT_OF_RANGE: [Code.INVALID_ARGUMENT],
  UNSUPPORTED_DTYPE: [Code.INVALID_ARGUMENT],
  UNSUPPORTED_LAYOUT: [Code.INVALID_ARGUMENT],
  UNSUPPORTED_SCALE_SCHEME: [Code.INVALID_ARGUMENT],
  UNSUPPORTED_BLOCK_SIZE: [Code.INVALID_ARGUMENT],
  HEAD_RANGE_INVALID: [Code.INVALID_ARGUMENT],
  UNSUPPORTED_FEATURE: [Code.UNIMPLEMENTED],
  REQUEST_ID_CONFLICT: [Code.ALREADY_EXISTS],
  KV_HANDLE_NOT_FOUND: [Code.NOT_FOUND],
  KV_HANDLE_EXPIRED: [Code.NOT_FOUND],
  RESUME_POSITION_INVALID: [Code.OUT_OF_RANGE],
  RETENTION_LIMIT_EXCEEDED: [Code.RESOURCE_EXHAUSTED],
  DEVICE_BUSY: [Code.RESOURCE_EXHAUSTED],
  RATE_LIMITED: [Code.RESOURCE_EXHAUSTED],
  TENANT_QUOTA_EXCEEDED: [Code.RESOURCE_EXHAUSTED],
  MESSAGE_TOO_LARGE: [Code.RESOURCE_EXHAUSTED],
  CHECKSUM_MISMATCH: [Code.DATA_LOSS],
  STREAM_INCOMPLETE: [Code.DATA_LOSS],
  DESCRIPTOR_MISMATCH: [Code.FAILED_PRECONDITION],
  PUSH_TARGET_UNREACHABLE: [Code.UNAVAILABLE],
  PUSH_REJECTED: [Code.ABORTED],
  TOKEN_INVALID: [Code.UNAUTHENTICATED],
  PERMISSION_DENIED: [Code.PERMISSION_DENIED],
  DEVICE_INITIALIZING: [Code.UNAVAILABLE],
  SHUTTING_DOWN: [Code.UNAVAILABLE],
  DEVICE_FAULT: [Code.UNAVAILABLE, Code.INTERNAL],
  POWER_CAPPED: [Code.RESOURCE_EXHAUSTED],
  DEADLINE_EXCEEDED: [Code.DEADLINE_EXCEEDED],
  CANCELLED: [Code.CANCELLED],
  INTERNAL: [Code.INTERNAL],
};

/** Reasons that MUST carry a `RetryInfo` (`ERR-4`). */
const RETRY_REQUIRED = new Set([
  "DEVICE_BUSY",
  "RATE_LIMITED",
  "TENANT_QUOTA_EXCEEDED",
  "POWER_CAPPED",
]);

/**
 * Checks that a device status is well formed whatever it says: a `grpc-status-details-bin` trailer
 * decoding to a `google.rpc.Status` with the call's code and message (`ERR-2`), exactly one
 * `ErrorInfo` of domain `opal.device` with a documented reason used with its code (`ERR-3`),
 * `RetryInfo` where it is required (`ERR-4`), `BadRequest` with a field on INVALID_ARGUMENT and
 * UNSUPPORTED_FEATURE (`ERR-5`). Returns the violations.
 */
export function checkStatusShape(status: WireStatus): string[] {
  const problems: string[] = [];
  const name = codeName(status.code).toUpperCase();
  if (!status.details) {
    problems.push(
      status.detailsError
        ? `ERR-2: grpc-status-details-bin does not decode: ${status.detailsError}`
        : `ERR-2: ${name} status without grpc-status-details-bin`,
    );
    return problems;
  }
  const d = status.details;
  if (d.code !== status.code)
    problems.push(`ERR-2: Status.code ${d.code} differs from the call's ${status.code}`);
  if (d.message !== status.message) {
    problems.push(
      `ERR-2: Status.message ${JSON.stringify(d.message)} differs from the call's ${JSON.stringify(status.message)}`,
    );
  }
  if (d.errorInfos.length !== 1)
    problems.push(`ERR-3: ${d.errorInfos.length} ErrorInfo details (expected exactly 1)`);
  const info = d.errorInfos[0];
  if (info) {
    if (info.domain !== "opal.device")
      problems.push(
        `ERR-3: ErrorInfo.domain ${JSON.stringify(info.domain)} (expected "opal.device")`,
      );
    const codes = REASON_CODES[info.reason];
    if (!Object.hasOwn(Reason, info.reason) || info.reason === "UNSPECIFIED") {
      problems.push(`ERR-3: reason ${JSON.stringify(info.reason)} is not a documented ErrorReason`);
    } else if (codes && !codes.includes(status.code)) {
      problems.push(
        `ERR-3: reason ${info.reason} used with ${name} (documented: ${codes.map((c) => codeName(c).toUpperCase()).join(" or ")})`,
      );
    }
    if (RETRY_REQUIRED.has(info.reason) && d.retryDelayMs === undefined) {
      problems.push(`ERR-4: ${info.reason} without RetryInfo`);
    }
    const needsBadRequest =
      status.code === Code.INVALID_ARGUMENT || info.reason === "UNSUPPORTED_FEATURE";
    if (needsBadRequest && !d.fieldViolations?.some((v) => v.field)) {
      problems.push(`ERR-5: ${name} ${info.reason} without a BadRequest field violation`);
    }
  }
  return problems;
}

/** What a failure must look like. */
export interface ExpectedStatus {
  readonly code: number;
  /** Accepted reasons (any of). */
  readonly reasons: readonly string[];
  /** A `BadRequest` violation MUST name this field path (`GEN-6`). */
  readonly field?: string;
  /** `RetryInfo` must be absent (`ERR-4`: retrying cannot succeed). */
  readonly noRetryInfo?: boolean;
  /** No response message may precede the error (`PF-2`); default true. */
  readonly beforeAnyMessage?: boolean;
  /** Requirement ids to cite on a mismatch. */
  readonly spec?: string;
}

/** Fails unless `error` is a device status matching `expected` and well formed (`checkStatusShape`). */
export function assertStatus(error: unknown, expected: ExpectedStatus, what: string): WireStatus {
  const status = toWireStatus(error);
  if (!status) {
    if (error instanceof OpalError && error.reason === FAILURE_REASON) throw error;
    throw new OpalError(
      Code.FAILED_PRECONDITION,
      `${expected.spec ? `${expected.spec}: ` : ""}${what}: ${error ? (error as Error).message : "the call succeeded"}, expected ${codeName(expected.code).toUpperCase()} ${expected.reasons.join("/")}`,
      { reason: FAILURE_REASON },
    );
  }
  return assertWireStatus(status, expected, what);
}

/** Fails unless `status` (undefined: the call succeeded) matches `expected` and is well formed. */
export function assertWireStatus(
  status: WireStatus | undefined,
  expected: ExpectedStatus,
  what: string,
): WireStatus {
  const spec = expected.spec ? `${expected.spec}: ` : "";
  assertConformance(
    status,
    `${spec}${what}: the call succeeded, expected ${codeName(expected.code).toUpperCase()} ${expected.reasons.join("/")}`,
  );
  const reason = status.details?.errorInfos[0]?.reason ?? "";
  const problems = checkStatusShape(status);
  // A malformed status (no trailer, a vendor reason) is named by its own rule, not only as a mismatch.
  assertConformance(
    status.code === expected.code && expected.reasons.includes(reason),
    `${spec}${what}: got ${codeName(status.code).toUpperCase()} ${reason || "(no reason)"} ${JSON.stringify(status.message)}, expected ${codeName(expected.code).toUpperCase()} ${expected.reasons.join("/")}${problems.length ? `; ${problems.join("; ")}` : ""}`,
  );
  if (expected.field !== undefined) {
    const fields = status.details?.fieldViolations?.map((v) => v.field) ?? [];
    if (!fields.includes(expected.field)) {
      problems.push(
        `${expected.spec ?? "ERR-5"}: BadRequest names ${JSON.stringify(fields)}, expected ${JSON.stringify(expected.field)} (GEN-6)`,
      );
    }
  }
  if (expected.noRetryInfo && status.details?.retryDelayMs !== undefined) {
    problems.push(`ERR-4: ${reason} carries RetryInfo although retrying cannot succeed`);
  }
  if ((expected.beforeAnyMessage ?? true) && status.messagesBefore > 0) {
    problems.push(`PF-2: the error came after ${status.messagesBefore} response message(s)`);
  }
  assertConformance(problems.length === 0, `${what}: ${problems.join("; ")}`);
  return status;
}

/** Runs `call` and asserts it fails as `expected`. */
export async function expectFailure(
  call: () => Promise<unknown>,
  expected: ExpectedStatus,
  what: string,
): Promise<WireStatus> {
  let error: unknown;
  try {
    await call();
  } catch (caught) {
    error = caught;
  }
  return assertStatus(error, expected, what);
}

/** Reads a whole server stream, failing with its error (for {@link expectFailure}). */
export async function drain(stream: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of stream) n++;
  return n;
}
