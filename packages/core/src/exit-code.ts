import { Code, codeName } from "./code";
import { OpalError } from "./opal-error";

/**
 * The exit codes of OPAL's executables (`opal`, `opal-mock`, `opal-conformance`), one table for
 * all three. A failure with a status code exits with 64 + that gRPC code, as grpcurl does (its
 * `statusCodeOffset`, fullstorydev/grpcurl cmd/grpcurl/grpcurl.go at 01f2a67c), so a script
 * tells an unreachable device (78) from a rejected request (67) or corrupted data (79) without
 * reading the message; 1 and 2 stay free for "not conformant" and usage errors.
 */
export const ExitCode = {
  /** Success. */
  OK: 0,
  /** The command ran and its verdict is "no" (`opal-conformance`: not conformant), or a failure without a status code. */
  FAILURE: 1,
  /** Bad command line: unknown command or option, a missing required option, a malformed value. */
  USAGE: 2,
  /** `opal-conformance`: nothing failed, but a Core test was skipped, so the device cannot be certified. */
  INCOMPLETE: 3,
  CANCELLED: 64 + Code.CANCELLED,
  UNKNOWN: 64 + Code.UNKNOWN,
  INVALID_ARGUMENT: 64 + Code.INVALID_ARGUMENT,
  DEADLINE_EXCEEDED: 64 + Code.DEADLINE_EXCEEDED,
  NOT_FOUND: 64 + Code.NOT_FOUND,
  ALREADY_EXISTS: 64 + Code.ALREADY_EXISTS,
  PERMISSION_DENIED: 64 + Code.PERMISSION_DENIED,
  RESOURCE_EXHAUSTED: 64 + Code.RESOURCE_EXHAUSTED,
  FAILED_PRECONDITION: 64 + Code.FAILED_PRECONDITION,
  ABORTED: 64 + Code.ABORTED,
  OUT_OF_RANGE: 64 + Code.OUT_OF_RANGE,
  UNIMPLEMENTED: 64 + Code.UNIMPLEMENTED,
  INTERNAL: 64 + Code.INTERNAL,
  UNAVAILABLE: 64 + Code.UNAVAILABLE,
  DATA_LOSS: 64 + Code.DATA_LOSS,
  UNAUTHENTICATED: 64 + Code.UNAUTHENTICATED,
} as const;

/** One of the values of {@link ExitCode}. */
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** What an executable reports about a failure: `--json` prints it as `{ "error": report }`. */
export interface ErrorReport {
  /** `usage` for a bad command line, otherwise the lower-case gRPC code name (`unavailable`). */
  readonly code: string;
  /** The process's exit code, from {@link ExitCode}. */
  readonly exitCode: number;
  /** The protocol's reason (`UNSUPPORTED_BLOCK_SIZE`); empty when none applies. */
  readonly reason: string;
  /** Path of the first invalid field (`kv_format.block_size_tokens`); empty when none. */
  readonly field: string;
  /** What went wrong, without the `[code]` prefix. */
  readonly message: string;
}

/**
 * True for commander's own errors (`CommanderError`, `InvalidArgumentError`), recognised by their
 * `commander.*` code so that this package needs no dependency on commander.
 */
function commanderError(error: unknown): { code: string; exitCode: number } | undefined {
  const e = error as { code?: unknown; exitCode?: unknown } | null;
  return typeof e?.code === "string" && e.code.startsWith("commander.")
    ? { code: e.code, exitCode: typeof e.exitCode === "number" ? e.exitCode : 1 }
    : undefined;
}

/**
 * The exit code for anything an executable's command threw: 0 for commander's help and version
 * exits, {@link ExitCode.USAGE} for its other errors, 64 + the code of an `OpalError`, and
 * {@link ExitCode.FAILURE} for anything else.
 */
export function exitCodeOf(error: unknown): number {
  const commander = commanderError(error);
  if (commander) return commander.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
  if (error instanceof OpalError) return 64 + error.code;
  return ExitCode.FAILURE;
}

/** The {@link ErrorReport} of anything an executable's command threw. */
export function toErrorReport(error: unknown): ErrorReport {
  const exitCode = exitCodeOf(error);
  if (commanderError(error)) {
    const message = (error as Error).message.replace(/^error: /, "");
    return { code: "usage", exitCode, reason: "", field: "", message };
  }
  const opal = OpalError.from(error);
  return {
    code: codeName(opal.code),
    exitCode,
    reason: opal.reason,
    field: opal.fieldViolations[0]?.field ?? "",
    message: opal.rawMessage,
  };
}

/**
 * The lines an executable prints on stderr for a failure: `<name>: [code] message`, then the
 * reason and every invalid field, e.g. `  reason: UNSUPPORTED_BLOCK_SIZE` and
 * `  field kv_format.block_size_tokens: expected one of [16], got 17`.
 */
export function formatErrorReport(name: string, error: unknown): string {
  const report = toErrorReport(error);
  if (report.code === "usage") return `${name}: ${report.message}`;
  const lines = [`${name}: [${report.code}] ${report.message}`];
  if (report.reason) lines.push(`  reason: ${report.reason}`);
  if (error instanceof OpalError) {
    for (const v of error.fieldViolations) {
      // Descriptions often lead with their own path already: print it once.
      const text = v.description.startsWith(`${v.field}: `)
        ? v.description.slice(v.field.length + 2)
        : v.description;
      lines.push(`  field ${v.field}: ${text}`);
    }
  }
  return lines.join("\n");
}
