import { describe, expect, it } from "vitest";
import { Code } from "./code";
import { ExitCode, exitCodeOf, formatErrorReport, toErrorReport } from "./exit-code";
import { OpalError } from "./opal-error";

/** What commander throws (CommanderError): a `commander.*` code and the exit code it would use. */
const commanderError = (code: string, exitCode: number, message: string) =>
  Object.assign(new Error(message), { code, exitCode });

describe("the executables' exit codes", () => {
  it("are 64 + the gRPC code for OpalErrors, 2 for usage, 0 for help and version, 1 otherwise", () => {
    expect(exitCodeOf(new OpalError(Code.UNAVAILABLE, "down"))).toBe(78);
    expect(exitCodeOf(new OpalError(Code.INVALID_ARGUMENT, "bad"))).toBe(ExitCode.INVALID_ARGUMENT);
    expect(ExitCode.DATA_LOSS).toBe(79);
    expect(exitCodeOf(commanderError("commander.unknownOption", 1, "error: unknown"))).toBe(2);
    expect(exitCodeOf(commanderError("commander.helpDisplayed", 0, "(outputHelp)"))).toBe(0);
    expect(exitCodeOf(new Error("plain"))).toBe(ExitCode.FAILURE);
    expect(exitCodeOf(Object.assign(new Error("fs"), { code: "ENOENT" }))).toBe(1);
  });

  it("report code, reason, first field and message, and print every field", () => {
    const error = new OpalError(Code.INVALID_ARGUMENT, "block size 17", {
      reason: "UNSUPPORTED_BLOCK_SIZE",
      fieldViolations: [
        { field: "kv_format.block_size_tokens", description: "expected one of [16], got 17" },
        { field: "kv_format.dtype", description: "kv_format.dtype: expected bf16, got f8" },
      ],
    });
    expect(toErrorReport(error)).toEqual({
      code: "invalid_argument",
      exitCode: 67,
      reason: "UNSUPPORTED_BLOCK_SIZE",
      field: "kv_format.block_size_tokens",
      message: "block size 17",
    });
    expect(formatErrorReport("opal", error)).toBe(
      "opal: [invalid_argument] block size 17\n  reason: UNSUPPORTED_BLOCK_SIZE\n" +
        "  field kv_format.block_size_tokens: expected one of [16], got 17\n" +
        "  field kv_format.dtype: expected bf16, got f8",
    );
    const usage = commanderError("commander.missingMandatoryOptionValue", 1, "error: required");
    expect(toErrorReport(usage)).toEqual({
      code: "usage",
      exitCode: 2,
      reason: "",
      field: "",
      message: "required",
    });
    expect(formatErrorReport("opal", usage)).toBe("opal: required");
  });
});
